"""The committed default model: loads pickle-free, classifies the real photos, refuses what it should."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.classifier import (
    METADATA_FILE,
    MODEL_FILE,
    GestureClassifier,
    ModelLoadError,
    default_model_dir,
    load_classifier,
    load_directory,
)
from model.datasets import read_landmark_csv
from model.features import FEATURE_VERSION, N_FEATURES, features_from_xy, landmark_features
from model.openset import NO_GESTURE

GESTURES = ("dislike", "fist", "four", "like", "one", "palm", "peace", "stop", "three")


@pytest.fixture(scope="module")
def default() -> GestureClassifier:
    return load_classifier(None)


@pytest.fixture(scope="module")
def photo_features(gestures_dir) -> dict[str, np.ndarray]:
    """MediaPipe (static image mode, as POST /predict uses it) on every labelled photo -> features."""
    from mediapipe.python.solutions import hands as mp_hands

    out = {}
    with mp_hands.Hands(static_image_mode=True, max_num_hands=1) as hands:
        for gesture in GESTURES:
            rgb = cv2.cvtColor(cv2.imread(str(gestures_dir / f"{gesture}.jpg")), cv2.COLOR_BGR2RGB)
            result = hands.process(rgb)
            assert result.multi_hand_landmarks, gesture
            points = np.array([(p.x, p.y, p.z) for p in result.multi_hand_landmarks[0].landmark])
            out[gesture] = landmark_features(points, width=rgb.shape[1], height=rgb.shape[0])
    return out


def test_default_model_metadata(default):
    meta = json.loads((default_model_dir() / METADATA_FILE).read_text())
    assert default.info.feature_version == FEATURE_VERSION == meta["feature_version"]
    assert default.info.source == "default"
    assert list(default.classes) == meta["classes"]
    # The 18 gestures and a trained no_gesture class (natural hands, docs/decisions/0022-...).
    assert len(default.gestures) == 18 and set(default.classes) == {*default.gestures, NO_GESTURE}
    assert sum(f.stat().st_size for f in default_model_dir().iterdir()) < 10_000_000  # directory < 10 MB
    assert len(meta["data"]["sha256"]) == 64 and meta["data"]["rows"] > 10_000
    assert {"scikit-learn", "skops", "numpy"} <= set(meta["libraries"])
    shipped = {f.name: f.stat().st_size for f in default_model_dir().iterdir()}
    assert MODEL_FILE in shipped and max(shipped.values()) < 5_000_000, shipped  # every file stays small


@pytest.mark.parametrize("gesture", GESTURES)
def test_default_model_recognises_each_photo(default, photo_features, gesture):
    prediction = default.predict(photo_features[gesture])
    assert prediction.gesture == gesture
    assert 0.5 < prediction.confidence <= 1.0


@pytest.mark.parametrize("gesture", GESTURES)
def test_either_hand(default, photo_features, gesture):
    """The same gesture by the other hand (x mirrored) is recognised too: trained with mirrored rows."""
    mirrored = photo_features[gesture].copy()
    mirrored[0:42:2] *= -1
    assert default.predict(mirrored).gesture == gesture


def test_fast_single_sample_path_matches_scikit_learn(default, landmarks_csv):
    ds = read_landmark_csv(landmarks_csv)
    rows = features_from_xy(ds.xy[np.random.default_rng(0).choice(len(ds), 200, replace=False)])
    expected = default.predict_proba(rows)
    # The compiled path over every support vector (the kernel expansion's own agreement with it is
    # tests/unit/test_expansion.py's business).
    fast = GestureClassifier(default.estimator, default.info, default.openset)
    slow = GestureClassifier(default.estimator, default.info, default.openset)
    slow._fast = None  # every number from scikit-learn's own decision values
    assert fast._fast is not None and fast.expansion is None
    for row, proba, reference in zip(rows, expected, slow.predict_many(rows), strict=True):
        prediction = fast.predict(row)
        best = int(np.argmax(proba))
        assert prediction.closest == fast.classes[best] == reference.closest
        assert prediction.gesture == reference.gesture
        # float32 models, and the fast path's float32 kernel product (worst seen: 1.2e-5)
        assert prediction.confidence == pytest.approx(reference.confidence, rel=1e-4)


def test_wrong_feature_count_is_refused(default):
    with pytest.raises(ValueError, match=f"expected {N_FEATURES} features"):
        default.predict(np.zeros(42, dtype=np.float32))


def _copy_default(tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(default_model_dir(), target)
    return target


def test_a_copied_model_directory_loads(tmp_path, default):
    copy = load_classifier(str(_copy_default(tmp_path)))
    assert copy.classes == default.classes
    assert copy.info.source.endswith("model")


def test_other_feature_versions_are_refused(tmp_path):
    directory = _copy_default(tmp_path)
    meta = json.loads((directory / METADATA_FILE).read_text())
    meta["feature_version"] = "something-else/v0"
    (directory / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="trained on features"):
        load_directory(directory)


def test_untrusted_types_are_refused(tmp_path):
    """A skops file naming a callable outside TRUSTED_TYPES (here: builtins.print) is not loaded."""
    import skops.io
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.svm import SVC

    directory = _copy_default(tmp_path)
    sneaky = make_pipeline(FunctionTransformer(func=print), SVC())
    assert skops.io.get_untrusted_types(data=skops.io.dumps(sneaky)) == ["builtins.print"]
    skops.io.dump(sneaky, directory / MODEL_FILE)
    with pytest.raises(ModelLoadError, match="refusing to load"):
        load_directory(directory)


def test_missing_models_fail_clearly(tmp_path):
    with pytest.raises(ModelLoadError):
        load_classifier(str(tmp_path / "nowhere"))
    with pytest.raises(ModelLoadError, match="unsupported model URI"):
        load_classifier("models:/gesture-classifier")


@pytest.mark.parametrize("hands", [2, 3, 4, 5, 12])
def test_a_batch_gets_what_each_hand_gets_alone(default, landmarks_csv, hands):
    # Thin batches take one matrix-vector product per hand, wider ones one matrix product: the same
    # decision values either way, up to float32 rounding.
    ds = read_landmark_csv(landmarks_csv)
    rows = features_from_xy(ds.xy[np.random.default_rng(hands).choice(len(ds), hands, replace=False)])
    fast = default._fast
    together = fast.ovo(fast.scaled(rows))
    alone = np.stack([fast.ovo(fast.scaled(row[None]))[0] for row in rows])
    assert together.shape == alone.shape
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=5e-4)
    assert [p.gesture for p in default.predict_many(rows)] == [default.predict(row).gesture for row in rows]
