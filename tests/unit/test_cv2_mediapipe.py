"""Exactly one OpenCV distribution is installed, and cv2 + MediaPipe Hands work together.

Two cv2 wheels (e.g. opencv-python next to mediapipe's opencv-contrib-python) overwrite each other's
`cv2/` package and break at import or at run time, depending on install order.
"""

from __future__ import annotations

from importlib import metadata

import numpy as np

CV2_DISTRIBUTIONS = (
    "opencv-python",
    "opencv-python-headless",
    "opencv-contrib-python",
    "opencv-contrib-python-headless",
)


def installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_exactly_one_cv2_distribution_is_installed() -> None:
    present = [name for name in CV2_DISTRIBUTIONS if installed(name)]
    assert present == ["opencv-contrib-python"], present


def test_cv2_and_mediapipe_hands_run_together() -> None:
    import cv2
    import mediapipe as mp

    assert cv2.__version__.startswith(metadata.version("opencv-contrib-python").rsplit(".", 1)[0])
    blank = cv2.cvtColor(np.zeros((240, 320, 3), dtype=np.uint8), cv2.COLOR_BGR2RGB)
    with mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=1, model_complexity=0) as hands:
        result = hands.process(blank)
    assert result.multi_hand_landmarks is None  # ran, and found no hand in a black frame
