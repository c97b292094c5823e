"""Train into a temporary MLflow registry, serve `models:/gesture-classifier@champion`, hot-swap it.

The real pipeline (`gesture-maze train --quick` on a small real subset) registers a model and sets the
alias; a real server started with that URI then classifies the real photos through `POST /predict`.
"""

from __future__ import annotations

import httpx
import pytest

from model.classifier import CHAMPION_ALIAS, REGISTERED_MODEL_NAME, ModelHandle
from model.features import FEATURE_VERSION
from stream.settings import Settings
from tests.support.mlflow_server import mlflow_server
from tests.support.server import LiveServer
from tests.unit.test_train import run_train, write_subset

pytestmark = pytest.mark.slow  # trains a model first (~30 s)

GESTURES = ("dislike", "fist", "four", "like", "one", "palm", "peace", "stop", "three")
CHAMPION_URI = f"models:/{REGISTERED_MODEL_NAME}@{CHAMPION_ALIAS}"


@pytest.fixture(scope="module")
def registry(tmp_path_factory, landmarks_csv) -> str:
    tmp = tmp_path_factory.mktemp("registry")
    subset = write_subset(landmarks_csv, tmp / "subset.csv", per_class=150, seed=1)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    run_train("--data", str(subset), "--quick", "--no-loso",
              env={"MLFLOW_TRACKING_URI": uri, "GM_DATA_DIR": str(tmp / "data")})
    return uri


def test_server_serves_the_registered_champion(registry, gestures_dir):
    _serve_champion_and_check_photos(registry, gestures_dir)


def test_training_against_a_tracking_server_registers_a_champion_the_server_serves(
        tmp_path, landmarks_csv, gestures_dir):
    """An MLflow tracking server (REST) instead of a local store: registering a version used to fail
    there (a `models:/` source must name its model id), so training stopped after its run."""
    subset = write_subset(landmarks_csv, tmp_path / "subset.csv", per_class=150, seed=1)
    with mlflow_server(tmp_path / "mlflow") as url:
        result = run_train("--data", str(subset), "--quick", "--no-loso",
                           env={"MLFLOW_TRACKING_URI": url, "GM_DATA_DIR": str(tmp_path / "data")})
        assert f"registered {REGISTERED_MODEL_NAME} v1" in result.stdout
        _serve_champion_and_check_photos(url, gestures_dir)


def _serve_champion_and_check_photos(tracking_uri: str, gestures_dir) -> None:
    # What an operator sets: GESTURE_MODEL_URI and MLFLOW_TRACKING_URI (read into Settings).
    settings = Settings.from_env({"GESTURE_MODEL_URI": CHAMPION_URI, "MLFLOW_TRACKING_URI": tracking_uri})
    # Started by hand for a longer start-up allowance: the lifespan downloads the model from the registry.
    server = LiveServer(settings).start(timeout=120)
    try:
        _check_photos(server, gestures_dir)
    finally:
        server.stop()


def _check_photos(server: LiveServer, gestures_dir) -> None:
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        info = server.app.state.services.models.current.info
        assert (info.name, info.version, info.alias) == (REGISTERED_MODEL_NAME, "1", CHAMPION_ALIAS)
        assert info.feature_version == FEATURE_VERSION
        for gesture in GESTURES:
            photo = (gestures_dir / f"{gesture}.jpg").read_bytes()
            response = client.post("/predict", files={"file": (f"{gesture}.jpg", photo, "image/jpeg")})
            assert response.status_code == 200, response.text
            assert response.json()["gesture"] == gesture, gesture


def test_refresh_picks_up_a_new_champion(registry, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry)  # MLflow resolves `models:/m-...` sources with it
    client = MlflowClient(tracking_uri=registry, registry_uri=registry)
    handle = ModelHandle(CHAMPION_URI, tracking_uri=registry)
    old = handle.current
    assert old.info.version == "1"
    assert handle.refresh() is False  # nothing moved

    v1 = client.get_model_version(REGISTERED_MODEL_NAME, "1")
    v2 = client.create_model_version(REGISTERED_MODEL_NAME, source=v1.source, run_id=v1.run_id)
    client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, v2.version)

    assert handle.refresh() is True
    assert handle.current is not old and handle.current.info.version == str(v2.version)
    assert old.info.version == "1"  # a frame holding the old classifier finishes on it unchanged
    assert handle.refresh() is False

    pinned = ModelHandle(f"models:/{REGISTERED_MODEL_NAME}/1", tracking_uri=registry)
    assert pinned.refresh() is False and pinned.current.info.version == "1"
