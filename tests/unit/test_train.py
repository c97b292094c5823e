"""`gesture-maze train --quick` end to end on a small real subset, into a temporary MLflow store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.classifier import CHAMPION_ALIAS, REGISTERED_MODEL_NAME, load_classifier
from model.datasets import read_landmark_csv
from model.features import FEATURE_VERSION, N_FEATURES, features_from_xy
from model.openset import NO_GESTURE
from model.splits import prepare, split
from model.train import DEFAULT_NATURAL_DIR, DEFAULT_TRAIN_ONLY_DIR
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.slow  # two real (quick) training runs


def write_subset(source: Path, target: Path, per_class: int, seed: int = 0) -> Path:
    """`per_class` random real rows of every class of the kp42 file, in its own format."""
    lines = source.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    label_col = header.split(",").index("label")
    by_label: dict[str, list[str]] = {}
    for row in rows:
        by_label.setdefault(row.split(",")[label_col], []).append(row)
    rng = np.random.default_rng(seed)
    keep = [r for group in by_label.values() for r in rng.permutation(group)[:per_class].tolist()]
    target.write_text("\n".join([header, *keep]) + "\n")
    return target


def run_train(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "stream.cli", "train", *args],
        cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory, landmarks_csv):
    tmp = tmp_path_factory.mktemp("train")
    subset = write_subset(landmarks_csv, tmp / "subset.csv", per_class=120)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri, "GM_DATA_DIR": str(tmp / "data")}
    # A smoke run leaves out the no_gesture class unless --natural names its files: this one does.
    natural = sorted(DEFAULT_NATURAL_DIR.glob("*.csv"))
    args = ("--data", str(subset), "--quick", "--experiment", "unit-test",
            *[a for p in natural for a in ("--natural", str(p))])
    first = run_train(*args, "--out-default", str(tmp / "default"), env=env)
    second = run_train(*args, env=env)
    return tmp, uri, first, second


def test_runs_metrics_and_artifacts_are_logged(trained):
    from mlflow.tracking import MlflowClient

    _, uri, first, _ = trained
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("unit-test")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    sweep = [r for r in runs if r.data.tags.get("stage") == "sweep"]
    final = [r for r in runs if r.data.tags.get("stage") == "final"]
    assert len(sweep) == 6 and len(final) == 2  # 3 candidates x 2 invocations
    for run in sweep + final:
        metrics = run.data.metrics
        prefix = "test_" if run in final else "val_"
        for name in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted", "f1_palm"):
            assert 0.0 <= metrics[prefix + name] <= 1.0
        assert metrics["train_time_s"] > 0 and metrics["latency_p50_ms"] > 0
        assert run.data.tags["feature_version"] == FEATURE_VERSION
        assert len(run.data.tags["data_sha256"]) == 64
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {f"{prefix}confusion_matrix.png", f"{prefix}classification_report.txt"} <= artifacts
        if run in final:  # drift monitoring's baseline travels with the model (model/drift.py)
            assert "drift_reference.json" in artifacts
    for run in sweep:
        assert 0.0 <= run.data.metrics["val_ece"] <= 1.0 and run.data.metrics["temperature_beta"] > 0
    for run in final:  # calibration and the no_gesture threshold, with their pictures
        metrics = run.data.metrics
        assert 0.0 <= metrics["test_ece"] <= 1.0
        assert metrics["ood_val_accepted"] >= 0.95 and 0.0 <= metrics["ood_test_negatives_rejected"] <= 1.0
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"reliability_test.png", "reliability_test.json", "ood_tradeoff_validation.png"} <= artifacts
    parent = next(r for r in runs if r.data.tags.get("stage") == "parent")
    assert "leaderboard.txt" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "Leaderboard" in first.stdout and "per-class test F1" in first.stdout


def test_champion_moves_only_when_beaten(trained):
    from mlflow.tracking import MlflowClient

    _, uri, first, second = trained
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = client.search_model_versions(f"name='{REGISTERED_MODEL_NAME}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    # Same data, same split, same winner: an equal score does not take the title.
    assert str(client.get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS).version) == "1"
    assert "champion -> v1" in first.stdout
    assert "champion stays v1" in second.stdout


def test_registered_and_default_models_load(trained, landmarks_csv):
    tmp, uri, _, _ = trained
    champion = load_classifier(f"models:/{REGISTERED_MODEL_NAME}@{CHAMPION_ALIAS}", tracking_uri=uri)
    assert (champion.info.version, champion.info.alias) == ("1", CHAMPION_ALIAS)
    default = load_classifier(str(tmp / "default"))
    meta = json.loads((tmp / "default" / "metadata.json").read_text())
    assert meta["feature_version"] == FEATURE_VERSION and meta["mlflow"]["registered_version"] == "1"
    assert meta["data"]["rows"] == 18 * 120
    # data/gestures joined the training split only: the test split is the subset's own.
    extra = meta["data"]["train_only"]
    assert extra["files"] == sorted(p.name for p in DEFAULT_TRAIN_ONLY_DIR.glob("*.csv"))
    assert extra["added"] > 0
    assert meta["split"]["test"] == len(split(prepare(read_landmark_csv(tmp / "subset.csv")).y).test)
    reference = json.loads((tmp / "default" / "drift_reference.json").read_text())
    assert reference["rows"] == 2 * meta["split"]["train+val"]  # train+val and its mirrored copies
    # The drift reference holds the gestures (a trained no_gesture class is not a gesture to watch).
    assert set(reference["classes"]) == set(meta["classes"]) - {NO_GESTURE}
    assert len(reference["features"]) == N_FEATURES
    assert NO_GESTURE in meta["classes"] and meta["data"]["natural"]["test"] > 0  # never trained on
    assert {"shipped", "previous"} <= set(meta["confidence"])
    ds = read_landmark_csv(landmarks_csv)
    rows = features_from_xy(ds.xy[:50])
    assert [champion.predict(r) for r in rows] == [default.predict(r) for r in rows]
    # The directory keeps an SVM's support vectors as hands; the registry keeps the full estimator.
    if meta["model"].startswith("svm_"):
        hands = np.load(tmp / "default" / "support_hands.npy")
        assert hands.shape == (len(champion.estimator[-1].support_), 21, 2)
    # Both carry the open-set head (registry: extra_files/openset.npz; directory: beside model.skops).
    assert champion.openset is not None and default.openset is not None
    assert champion.openset.threshold == default.openset.threshold == meta["openset"]["threshold"]


def _fold(rng: np.random.Generator, rows: int, slope: float) -> dict:
    """A leave-one-source-out fold's outputs for 3 gestures + no_gesture: the truth's duels are won
    by a margin drawn around `slope`, so wider margins are right more often."""
    from model.openset import pairwise_index

    classes = np.array(["a", "b", NO_GESTURE, "c"])
    y = rng.choice(["a", "b", "c"], rows)
    truth = np.searchsorted(classes, y)
    strength = rng.normal(slope, 1.5, rows)  # how clearly the truth wins; < 0: some rival wins
    pi, pj = pairwise_index(len(classes))
    ovo = rng.normal(0.0, 0.3, (rows, len(pi)))
    for p, (i, j) in enumerate(zip(pi, pj, strict=True)):
        ovo[truth == i, p] += strength[truth == i]
        ovo[truth == j, p] -= strength[truth == j]
    return {"y": y, "classes": classes, "ovo": ovo, "distance": np.zeros(rows)}


def test_the_duel_sigmoid_is_fitted_on_the_folds_and_scored_cross_fitted():
    from dataclasses import replace

    from model.openset import OpenSetHead
    from model.train import fit_duel_on_folds, loso_confidence, served_from_outputs

    rng = np.random.default_rng(5)
    head = OpenSetHead.fit_reference(rng.normal(size=(50, 4)), components=2)
    head.coupling = (1.5, 0.0)
    folds = [_fold(rng, 1500, 1.0), _fold(rng, 1500, 0.6), _fold(rng, 1500, 1.4)]
    assert fit_duel_on_folds(folds, replace(head, coupling=None)) is None  # no coupling: nothing to fit
    assert fit_duel_on_folds([{k: v for k, v in f.items() if k != "ovo"} for f in folds], head) is None
    duel = fit_duel_on_folds(folds, head)
    assert duel is not None and duel[0] > 0  # a wider weakest margin: more often right
    served = replace(head, duel=duel)
    answer, conf, _ = served_from_outputs(folds[0], served)
    plain_answer, plain_conf, _ = served_from_outputs(folds[0], head)
    assert np.array_equal(answer, plain_answer) and not np.allclose(conf, plain_conf)
    report = loso_confidence({"outputs": folds}, served)
    assert report["auroc"] > 0.8 and report["ece"] < 0.1, report
    # Scored cross-fitted: each fold by the sigmoid fitted on the other folds, never on itself.
    from model.evaluation import confidence_quality

    conf, right = [], []
    for k, fold in enumerate(folds):
        others = replace(head, duel=fit_duel_on_folds(folds[:k] + folds[k + 1:], head))
        a, c, r = served_from_outputs(fold, others)
        conf.append(c[~r])
        right.append((a == fold["y"])[~r])
    expected = confidence_quality(np.concatenate(conf), np.concatenate(right))
    assert (report["ece"], report["auroc"]) == pytest.approx((expected["ece"], expected["auroc"]))
    assert fit_duel_on_folds(folds[1:], head) != pytest.approx(duel)
