"""Where trained models go: the committed default directory and the MLflow tracking store/registry.

Models are written as skops files only (`mlflow.sklearn.log_model(serialization_format="skops")` in
MLflow; `skops.io.dump` for the default), and every type they contain must be in
`model.classifier.TRUSTED_TYPES`, so whatever the pipeline writes, serving can load without pickle.
"""

from __future__ import annotations

import contextlib
import json
import platform
from collections.abc import Mapping
from importlib import metadata as pkg_metadata
from pathlib import Path
from typing import Any

import numpy as np

from model import support_hands
from model.classifier import (
    CHAMPION_ALIAS,
    METADATA_FILE,
    MODEL_FILE,
    REGISTERED_MODEL_NAME,
    TRUSTED_TYPES,
)
from model.estimators import drop_training_state
from model.expansion import EXPANSION_FILE

LIBRARIES = ("scikit-learn", "numpy", "skops", "mlflow", "mediapipe")
DATA_DIR_ENV = "GM_DATA_DIR"
# Local state (MLflow sqlite store, artifacts, feedback): outside the checkout by default. The one owner
# of this default: `stream.settings.Settings.data_dir` uses it too.
DEFAULT_DATA_DIR = "~/.local/share/gesture-maze"


def default_data_dir(environ: Mapping[str, str] | None = None) -> str:
    """The local state directory: `GM_DATA_DIR` from `environ` when it is set there, else
    `DEFAULT_DATA_DIR` (not expanded). `environ` is passed in; model/ never reads the environment."""
    if environ is not None and DATA_DIR_ENV in environ:
        return environ[DATA_DIR_ENV]
    return DEFAULT_DATA_DIR


def default_tracking_uri(data_dir: str | Path, environ: Mapping[str, str] | None = None) -> str:
    """`MLFLOW_TRACKING_URI` when set, else a sqlite store in the data directory."""
    if environ is not None and environ.get("MLFLOW_TRACKING_URI"):
        return environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(data_dir).expanduser().resolve() / 'mlflow.db'}"


def artifact_location(data_dir: str | Path) -> str:
    """Artifacts of new experiments (with the default sqlite store) live beside it in the data directory."""
    return (Path(data_dir).expanduser().resolve() / "mlartifacts").as_uri()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = pkg_metadata.version(name)
        except pkg_metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def untrusted_types(estimator: Any) -> list[str]:
    """Types in `estimator` that skops would refuse without `TRUSTED_TYPES`; raises if any are outside it."""
    import skops.io

    found = skops.io.get_untrusted_types(data=skops.io.dumps(estimator))
    outside = sorted(set(found) - set(TRUSTED_TYPES))
    if outside:
        raise ValueError(f"model contains types serving does not trust: {outside} (add to TRUSTED_TYPES)")
    return sorted(found)


def write_model_dir(estimator: Any, directory: Path, metadata: dict[str, Any],
                    training_hands: np.ndarray | None = None) -> Path:
    """`model.skops` (LZMA zip) + `metadata.json`, the layout `load_directory` reads. Given the
    landmarks of the rows the estimator was fitted on, an SVM's support vectors are stored as those
    hands (`support_hands.npy`, `model.support_hands`), not as feature vectors."""
    import zipfile

    import skops.io

    drop_training_state(estimator)
    untrusted_types(estimator)
    directory.mkdir(parents=True, exist_ok=True)
    hands = None
    if training_hands is not None:
        estimator, hands = support_hands.split_support_hands(estimator, training_hands)
    # A directory written over must not keep an earlier model's hands, nor an expansion of its vectors.
    for stale in (support_hands.SUPPORT_HANDS_FILE, EXPANSION_FILE):
        (directory / stale).unlink(missing_ok=True)
    if hands is not None:
        support_hands.save(hands, directory)
    skops.io.dump(estimator, directory / MODEL_FILE, compression=zipfile.ZIP_LZMA)
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return directory


def ensure_experiment(client: Any, name: str, data_dir: str | Path | None) -> str:
    """The experiment's id, creating it (artifacts under data/ for a local sqlite store)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if data_dir is not None and str(client.tracking_uri).startswith("sqlite:"):
        location = artifact_location(data_dir)
    return str(client.create_experiment(name, artifact_location=location))


def register(client: Any, run_id: str, artifact_path: str, tags: Mapping[str, str]) -> str:
    """Register the run's logged model as a new version of `gesture-classifier`; returns the version."""
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):  # already exists
        client.create_registered_model(REGISTERED_MODEL_NAME)
    run = client.get_run(run_id)
    model_source, model_id = f"runs:/{run_id}/{artifact_path}", None
    for output in getattr(getattr(run, "outputs", None), "model_outputs", None) or []:
        model_id = output.model_id  # MLflow 3: the LoggedModel behind the run
        model_source = f"models:/{model_id}"
    # A tracking server (REST) refuses a `models:/` source unless the request names that model too;
    # a local store accepts either.
    version = client.create_model_version(
        REGISTERED_MODEL_NAME, source=model_source, run_id=run_id, tags=dict(tags), model_id=model_id
    )
    return str(version.version)


def current_champion(client: Any) -> Any | None:
    """The ModelVersion behind `gesture-classifier@champion`, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS)
    except MlflowException:
        return None


def set_champion(client: Any, version: str) -> None:
    client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, version)
