"""The Y4M fake-webcam writer the browser tests rely on (no browser needed)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.support.video import HEIGHT, WIDTH, gesture_video, letterbox, read_y4m_header, write_y4m


def test_clip_has_the_frames_chromium_expects(tmp_path, gestures_dir):
    path = gesture_video(tmp_path / "clip.y4m", gestures_dir, [("peace", 0.5), ("three", 0.3)], fps=10)
    header = read_y4m_header(path)
    assert header == {"W": str(WIDTH), "H": str(HEIGHT), "F": "10:1", "I": "p", "A": "1:1", "C": "420jpeg"}

    raw = path.read_bytes()
    body = raw[raw.index(b"\n") + 1 :]
    frame_bytes = WIDTH * HEIGHT * 3 // 2
    assert len(body) == 8 * (len(b"FRAME\n") + frame_bytes)  # 5 peace + 3 three frames

    # The first frame's luma plane is the letterboxed photo (so MediaPipe sees the real hand), in the
    # BT.601 studio range (16..235) that Chromium decodes I420 with.
    assert body.startswith(b"FRAME\n")
    luma = np.frombuffer(body[6 : 6 + WIDTH * HEIGHT], dtype=np.uint8).reshape(HEIGHT, WIDTH)
    gray = cv2.cvtColor(letterbox(cv2.imread(str(gestures_dir / "peace.jpg"))), cv2.COLOR_BGR2GRAY)
    expected = 16 + gray.astype(float) * 219 / 255
    assert np.abs(luma - expected).mean() < 3

    # ...and the last frame is the second photo, not the first.
    last = body[-frame_bytes : -frame_bytes + WIDTH * HEIGHT]
    last_luma = np.frombuffer(last, dtype=np.uint8).reshape(HEIGHT, WIDTH)
    assert np.abs(last_luma - expected).mean() > 3


def test_odd_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_y4m(tmp_path / "odd.y4m", [np.zeros((5, 4, 3), dtype=np.uint8)], 10)
