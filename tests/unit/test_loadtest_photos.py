"""The load-test tool's bundled photos: real hands, labelled as the classifier names them, shipped with
the package with their licence and attribution."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch

import cv2
import numpy as np
import pytest

from model.classifier import load_classifier
from model.features import landmark_features
from model.landmarks import HandTracker
from stream.loadtest.frames import BUNDLED_IMAGES_DIR, FrameSource, FrameSourceError
from tests.support.paths import REPO_ROOT

PHOTOS = sorted(BUNDLED_IMAGES_DIR.glob("*.jpg"))


def test_bundled_set_is_small_licensed_and_package_data() -> None:
    assert {p.stem for p in PHOTOS} == {"like", "dislike", "none"}
    assert sum(p.stat().st_size for p in BUNDLED_IMAGES_DIR.iterdir()) < 200_000
    attribution = (BUNDLED_IMAGES_DIR / "ATTRIBUTION.md").read_text()
    assert "Apache License, Version 2.0" in attribution
    assert all(f"`{p.name}`" in attribution for p in PHOTOS)
    assert "Apache License" in (BUNDLED_IMAGES_DIR / "LICENSE-Apache-2.0.txt").read_text()
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["stream"]
    stream_dir = REPO_ROOT / "stream"
    for path in BUNDLED_IMAGES_DIR.iterdir():
        relative = path.relative_to(stream_dir).as_posix()
        assert any(fnmatch(relative, pattern) for pattern in patterns), f"{relative} is not package data"


@pytest.mark.parametrize("complexity", [0, 1])
def test_bundled_photos_are_what_their_names_say(complexity: int) -> None:
    classifier = load_classifier(None)
    with HandTracker(model_complexity=complexity, static_image_mode=True) as tracker:
        for photo in PHOTOS:
            image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
            hand = tracker.detect(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            if photo.stem == "none":
                assert hand is None, "the pause frame must show no hand"
                continue
            assert hand is not None, f"no hand found in {photo.name}"
            height, width = image.shape[:2]
            prediction = classifier.predict(landmark_features(hand.normalized, width=width, height=height))
            assert prediction.gesture == photo.stem, (photo.name, prediction)


def test_schedule_uses_the_gestures_the_folder_has(tmp_path) -> None:
    source = FrameSource.from_photos(BUNDLED_IMAGES_DIR, variants=3)
    assert [s.gesture for s in source.schedule] == ["like", "none", "dislike", "none"]
    assert source.gesture_at(0.5) == "like" and source.gesture_at(1.2) == "none"
    frame = cv2.imdecode(np.frombuffer(source.frame("dislike", 0), np.uint8), cv2.IMREAD_COLOR)
    assert frame.shape == (240, 320, 3)
    # A folder with a move gesture but nothing to show between gestures is refused, with what is missing.
    (tmp_path / "like.jpg").write_bytes((BUNDLED_IMAGES_DIR / "like.jpg").read_bytes())
    with pytest.raises(FrameSourceError, match="one of palm, none"):
        FrameSource.from_photos(tmp_path)
