"""`gesture-maze retrain`: base data + players' consented corrections -> a challenger -> gated promotion.

    gesture-maze retrain --data ../shared/data/landmarks/landmarks_kp42.csv [--data more.csv ...]
                         [--feedback-url URL] [--experiment NAME] [--tracking-uri URI]

Steps:
1. the champion (`gesture-classifier@champion`) and its configuration, read from its MLflow run's
   params (family + estimator params) — retraining never changes the model family on its own;
2. base rows -> the same de-duplication and frozen stratified split as `gesture-maze train`;
3. labelled feedback from the store (`model.feedback`), split by CONTRIBUTOR (the opaque id of the
   source each row carries) into a training part and a held-out slice: a fixed hash ranks the
   contributors, `--holdout` of them (at least `--min-contributors`) are held out whole, so no
   source is both taught and judge; in training each contributor is capped (its newest
   `--contributor-cap` events, and never more than the median contributor offers);
4. the challenger is trained with `gesture-maze train`'s own steps (model.train), for the champion's
   one candidate: the open-set head (temperature + `no_gesture` threshold) is fitted with the
   candidate trained on the train split and chosen on the validation split and held-out negatives;
   the model is then fitted on train+val + the feedback training part (both hands, mirrored) and the
   head's reference rows become those rows, so a corrected hand is no longer "none of the gestures";
5. challenger and champion are scored on the frozen test split (closed set, as `train` scores it) and
   on the held-out feedback slice (the answer the server would give, `no_gesture` included), its
   accuracy averaged over contributors (each held-out contributor counts once, however many rows);
6. the challenger is registered with lineage (parent version, base-data fingerprint, feedback ids and
   counts); the `champion` alias moves to it only if it (a) scores at least the champion's macro-F1 on
   the test split (ties pass, see docs/decisions/0012-retrain-gate.md), (b) loses no class's F1 by
   more than `--max-class-drop` (0.02), (c) is strictly more accurate than the champion on the
   held-out feedback slice, (d) that slice holds at least `--min-contributors` (2) distinct
   contributors, and (e) on no class of the test split does it turn more than `--max-class-flip`
   (0.02, at least one row) of the rows to a wrong answer the champion did not give (docs/decisions/
   0021-retrain-gate-across-contributors.md). A server serving
   `models:/gesture-classifier@champion` picks the new version up on its next poll.

Nothing happens (exit 0, no run) when there is no new labelled feedback since the champion was made.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from model import drift
from model.classifier import REGISTERED_MODEL_NAME, load_registered
from model.estimators import Candidate, build
from model.evaluation import Scores, score
from model.expansion import EXPANSION_FILE
from model.features import features_from_xy
from model.feedback import (
    FeedbackStore,
    StoredFeedback,
    configured_feedback_url,
    default_feedback_url,
    fingerprint,
)
from model.openset import DEFAULT_MIN_ACCEPT, NO_GESTURE, OPENSET_FILE
from model.registry import (
    DEFAULT_DATA_DIR,
    current_champion,
    default_data_dir,
    default_tracking_uri,
    ensure_experiment,
    register,
    set_champion,
)
from model.splits import Augmentation, as_recorded

log = logging.getLogger("gesture_maze.retrain")
# Params `gesture-maze train` and `retrain` log next to the estimator's own (not estimator kwargs).
RUN_ONLY_PARAMS = frozenset({
    "family", "train_rows", "selected_by", "mirrored_training_rows", "rotated_copies", "max_rotation_degrees",
    "feedback_train_events",
    "feedback_train_frames", "feedback_holdout_events", "parent_version", "min_accept", "negatives_files",
    "quick", "loso_accept", "no_gesture_cap", "feedback_train_contributors", "feedback_holdout_contributors",
    "feedback_capped_events", "contributor_cap", "min_contributors", "max_class_flip",
})
DEFAULT_MIN_CONTRIBUTORS = 2
DEFAULT_CONTRIBUTOR_CAP = 30
DEFAULT_MAX_CLASS_FLIP = 0.02


@dataclass
class Gate:
    test_f1: float
    champion_test_f1: float
    worst_class: str
    worst_class_drop: float
    feedback_accuracy: float | None  # mean over held-out contributors of each one's accuracy
    champion_feedback_accuracy: float | None
    max_class_drop: float
    holdout_contributors: int = 0
    min_contributors: int = DEFAULT_MIN_CONTRIBUTORS
    flip_class: str = ""  # the test class with the most rows turned wrong (vs the champion)
    flip_rows: int = 0
    flip_allowed: int = 0  # rows of that class allowed to turn wrong: max(1, max_class_flip x rows)
    max_class_flip: float = DEFAULT_MAX_CLASS_FLIP

    @property
    def test_ok(self) -> bool:
        return self.test_f1 >= self.champion_test_f1

    @property
    def contributors_ok(self) -> bool:
        return self.holdout_contributors >= self.min_contributors

    @property
    def flips_ok(self) -> bool:
        return self.flip_rows <= self.flip_allowed

    @property
    def classes_ok(self) -> bool:
        return self.worst_class_drop <= self.max_class_drop + 1e-12

    @property
    def feedback_ok(self) -> bool:
        return (self.feedback_accuracy is not None and self.champion_feedback_accuracy is not None
                and self.feedback_accuracy > self.champion_feedback_accuracy)

    @property
    def passed(self) -> bool:
        return (self.test_ok and self.classes_ok and self.feedback_ok and self.contributors_ok
                and self.flips_ok)

    def reasons(self) -> list[str]:
        out = []
        if not self.test_ok:
            out.append(f"test macro-F1 {self.test_f1:.4f} < champion {self.champion_test_f1:.4f}")
        if not self.classes_ok:
            out.append(f"class {self.worst_class!r} F1 drops by {self.worst_class_drop:.4f} "
                       f"(> {self.max_class_drop})")
        if not self.feedback_ok:
            out.append("no held-out feedback to judge by" if self.feedback_accuracy is None else
                       f"feedback slice accuracy {self.feedback_accuracy:.4f} does not beat the champion's "
                       f"{self.champion_feedback_accuracy:.4f}")
        if not self.contributors_ok:
            out.append(f"the held-out feedback comes from {self.holdout_contributors} contributor(s), "
                       f"fewer than {self.min_contributors}: feedback from so few sources cannot promote")
        if not self.flips_ok:
            out.append(f"{self.flip_rows} test rows of class {self.flip_class!r} turn wrong "
                       f"(> {self.flip_allowed} allowed, {self.max_class_flip:g} of the class)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"test_f1_macro": self.test_f1, "champion_test_f1_macro": self.champion_test_f1,
                "worst_class": self.worst_class, "worst_class_f1_drop": self.worst_class_drop,
                "max_class_drop": self.max_class_drop, "feedback_holdout_accuracy": self.feedback_accuracy,
                "champion_feedback_holdout_accuracy": self.champion_feedback_accuracy,
                "holdout_contributors": self.holdout_contributors, "min_contributors": self.min_contributors,
                "flip_class": self.flip_class, "flip_rows": self.flip_rows, "flip_allowed": self.flip_allowed,
                "max_class_flip": self.max_class_flip, "passed": self.passed, "reasons": self.reasons()}


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gesture-maze retrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", action="append", required=True, metavar="PATH",
                   help="base landmark CSV(s), as given to `gesture-maze train`")
    p.add_argument("--feedback-url", default=None,
                   help="SQLAlchemy URL of the feedback store (default: $GM_FEEDBACK_URL, "
                   "else sqlite:///<data dir>/feedback.db)")
    p.add_argument("--experiment", default="gesture-maze", help="MLflow experiment name")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default as for train)")
    p.add_argument("--data-dir", default=None, help="local state directory (default: $GM_DATA_DIR or "
                   f"{DEFAULT_DATA_DIR})")
    p.add_argument("--holdout", type=float, default=0.3,
                   help="share of feedback contributors held out (whole) to judge the challenger "
                   "(default 0.3)")
    p.add_argument("--min-contributors", type=int, default=DEFAULT_MIN_CONTRIBUTORS,
                   help="distinct contributors the held-out feedback must come from for promotion "
                   f"(default {DEFAULT_MIN_CONTRIBUTORS})")
    p.add_argument("--contributor-cap", type=int, default=DEFAULT_CONTRIBUTOR_CAP,
                   help="most feedback events of one contributor trained on (its newest; never more "
                   f"than the median contributor offers; default {DEFAULT_CONTRIBUTOR_CAP}; 0 = no cap)")
    p.add_argument("--max-class-drop", type=float, default=0.02,
                   help="largest per-class test F1 loss allowed for promotion (default 0.02)")
    p.add_argument("--max-class-flip", type=float, default=DEFAULT_MAX_CLASS_FLIP,
                   help="largest share of a class's test rows the challenger may turn to a wrong answer "
                   f"the champion did not give (at least one row; default {DEFAULT_MAX_CLASS_FLIP})")
    p.add_argument("--force", action="store_true", help="retrain even without new feedback")
    p.add_argument("--negatives", action="append", default=None, metavar="PATH",
                   help="landmark CSV of non-gesture hands for the no_gesture threshold (as for train)")
    p.add_argument("--no-negatives", action="store_true",
                   help="choose the no_gesture threshold from known gestures only")
    p.add_argument("--min-accept", type=float, default=None,
                   help="share of validation gestures the no_gesture threshold keeps (default: the "
                   f"champion's run param, else {DEFAULT_MIN_ACCEPT})")
    from model.train import (
        add_augmentation_arguments,
        add_expansion_arguments,
        add_natural_arguments,
        add_train_only_arguments,
    )

    add_train_only_arguments(p)
    add_natural_arguments(p)
    add_augmentation_arguments(p)  # unset: the champion's run says
    add_expansion_arguments(p)
    return p.parse_args(list(argv))


def parse_param(value: str) -> Any:
    """MLflow stores params as text: '100' -> 100, '0.05' -> 0.05, 'scale' -> 'scale'."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(value, value)


def champion_candidate(params: dict[str, str]) -> Candidate:
    """The champion's configuration from its run's params (only those its estimator accepts)."""
    if "family" not in params:
        raise SystemExit("the champion's run has no `family` param: cannot tell its configuration")
    family = params["family"]
    accepted = {name.rsplit("__", 1)[-1] for name in build(Candidate(family)).get_params(deep=True)}
    # The MLP's layer sizes, an ensemble's size, the PCA step's components (model.estimators).
    accepted |= {"hidden", "members", "pca"}
    return Candidate(family, {k: parse_param(v) for k, v in sorted(params.items())
                              if k not in RUN_ONLY_PARAMS and k in accepted})


def held_out(event_id: int, share: float) -> bool:
    """A fixed, uniform-looking assignment of feedback events to the held-out slice."""
    digest = hashlib.sha256(f"feedback-holdout:{event_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


def _rank(contributor: str) -> bytes:
    return hashlib.sha256(f"feedback-holdout:{contributor}".encode()).digest()


def split_by_contributor(events: Sequence[StoredFeedback], share: float, min_contributors: int
                         ) -> tuple[list[StoredFeedback], list[StoredFeedback]]:
    """(training, held out): whole contributors are held out, ranked by a fixed hash of their id:
    `share` of them, at least `min_contributors`, always leaving one to train on. With fewer than
    `min_contributors + 1` contributors nothing is held out (and the gate cannot pass)."""
    names = sorted({e.contributor for e in events}, key=_rank)
    if len(names) < min_contributors + 1:
        return list(events), []
    k = min(len(names) - 1, max(min_contributors, math.ceil(share * len(names))))
    judges = set(names[:k])
    return [e for e in events if e.contributor not in judges], [e for e in events if e.contributor in judges]


def cap_contributors(events: Sequence[StoredFeedback], cap: int) -> list[StoredFeedback]:
    """Each contributor's newest events, at most c of them: c is `cap` (0 = no cap) and, with two or
    more contributors, at most the (lower) median of what the contributors offer, so no source weighs
    more than a typical one; one source among m others holds at most about 1/(m+1) of the rows."""
    by: dict[str, list[StoredFeedback]] = {}
    for e in sorted(events, key=lambda e: e.id):
        by.setdefault(e.contributor, []).append(e)
    sizes = sorted(len(v) for v in by.values())
    if not sizes:
        return []
    c = cap if cap > 0 else sizes[-1]
    if len(sizes) >= 2:
        c = min(c, sizes[(len(sizes) - 1) // 2])
    kept = [e for rows in by.values() for e in rows[-c:]]
    return sorted(kept, key=lambda e: e.id)


def contributor_accuracy(answers: np.ndarray, truth: np.ndarray, contributors: np.ndarray) -> float | None:
    """Mean over contributors of each one's accuracy (each counts once, however many rows)."""
    if not len(truth):
        return None
    return float(np.mean([np.mean(answers[contributors == c] == truth[contributors == c])
                          for c in np.unique(contributors)]))


def worst_flips(candidate_pred: np.ndarray, champion_pred: np.ndarray, y_test: np.ndarray,
                max_class_flip: float) -> tuple[str, int, int]:
    """The class whose test rows the challenger turns wrong (to an answer the champion did not give)
    most beyond its allowance: (class, rows, allowed), allowed = max(1, max_class_flip x its rows)."""
    worst = ("", 0, 0)
    excess = -math.inf
    for c in np.unique(y_test):
        rows = y_test == c
        turned = int(np.sum(rows & (candidate_pred != champion_pred) & (candidate_pred != y_test)))
        allowed = max(1, math.floor(max_class_flip * int(rows.sum()) + 1e-9))
        if turned - allowed > excess:
            worst, excess = (str(c), turned, allowed), turned - allowed
    return worst


def feedback_rows(events: Sequence[StoredFeedback]) -> tuple[np.ndarray, np.ndarray]:
    if not events:
        return np.empty((0, 21, 2)), np.empty(0, dtype=str)
    xy = np.concatenate([e.xy for e in events])
    labels = np.concatenate([[e.label] * len(e.xy) for e in events]).astype(str)
    return xy, labels


def _predict(clf: Any, X: np.ndarray) -> np.ndarray:
    """Closed-set answers of a GestureClassifier, as `gesture-maze train` scores them: argmax of the
    class scores over the known gestures (a trained `no_gesture` class is left out)."""
    classes = np.asarray(clf.classes)
    scores = np.where(classes[None, :] == NO_GESTURE, -np.inf, clf.class_scores(X))
    return classes[np.argmax(scores, axis=1)]


def _answers(clf: Any, X: np.ndarray) -> np.ndarray:
    """What the server would answer: the closed-set gesture, or `no_gesture` beyond the open-set
    threshold (for models with an open-set head)."""
    pred = _predict(clf, X).astype(object)
    if clf.openset is not None and len(X):
        pred[clf.rejects(X)] = NO_GESTURE
    return pred.astype(str)


def evaluate(candidate_pred: np.ndarray, champion_pred: np.ndarray, y_test: np.ndarray,
             fb_cand: np.ndarray, fb_champ: np.ndarray, fb_y: np.ndarray, labels: list[str],
             max_class_drop: float, fb_contributors: np.ndarray | None = None,
             min_contributors: int = DEFAULT_MIN_CONTRIBUTORS,
             max_class_flip: float = DEFAULT_MAX_CLASS_FLIP) -> tuple[Gate, Scores, Scores]:
    new, old = score(y_test, candidate_pred, labels), score(y_test, champion_pred, labels)
    drops = {c: old.per_class_f1[c] - new.per_class_f1.get(c, 0.0) for c in old.per_class_f1}
    worst = max(drops, key=lambda c: drops[c])
    who = np.zeros(len(fb_y), dtype=object) if fb_contributors is None else np.asarray(fb_contributors)
    fb_acc = contributor_accuracy(fb_cand, fb_y, who)
    fb_champ_acc = contributor_accuracy(fb_champ, fb_y, who)
    flip_class, flip_rows, flip_allowed = worst_flips(candidate_pred, champion_pred, y_test, max_class_flip)
    return Gate(new.f1_macro, old.f1_macro, worst, float(drops[worst]), fb_acc, fb_champ_acc,
                max_class_drop, len(set(who.tolist())), min_contributors, flip_class, flip_rows,
                flip_allowed, max_class_flip), new, old


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    import mlflow
    from mlflow.tracking import MlflowClient

    from model.train import (
        Context,
        NaturalHands,
        Negatives,
        _log_model,
        _log_openset,
        _wrap,
        augmentation_of,
        compile_expansion,
        evaluate_open_set,
        fit_openset,
        load_split_data,
        natural_paths,
        negative_paths,
    )
    data_dir = Path(args.data_dir or default_data_dir(os.environ)).expanduser()
    data_dir.mkdir(parents=True, exist_ok=True)
    tracking_uri = args.tracking_uri or default_tracking_uri(data_dir, os.environ)
    os.environ.setdefault("MLFLOW_TRACKING_URI", tracking_uri)  # `models:/m-...` sources resolve with it
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    champ = current_champion(client)
    if champ is None:
        print("no champion in the registry: run `gesture-maze train` first", file=sys.stderr)
        return 2
    champ_run = client.get_run(champ.run_id)
    candidate = champion_candidate(champ_run.data.params)
    augmentation = augmentation_of(args, Augmentation.from_params(champ_run.data.params))

    feedback_url = args.feedback_url or configured_feedback_url(os.environ) or default_feedback_url(data_dir)
    store = FeedbackStore(feedback_url)
    try:
        stored = store.count()
        labelled = store.events(labelled_only=True)
    finally:
        store.close()

    loaded = load_split_data(args, verbose=False)
    ds, data, sp = loaded.dataset, loaded.data, loaded.split
    labels = sorted(set(data.y.tolist()))
    usable = [e for e in labelled if e.label in labels]
    fb_all = fingerprint(usable)
    print(f"champion v{champ.version}: {candidate.name}; feedback: {stored} stored, "
          f"{len(labelled)} labelled, {len(usable)} with a known label ({fb_all['frames']} frames)")
    if not usable:
        print("no labelled feedback to learn from: nothing to do")
        return 0
    if champ.tags.get("feedback_sha256") == fb_all["sha256"] and not args.force:
        print("no new feedback since the champion was trained: nothing to do")
        return 0

    # No source is both taught and judge; none outweighs the others in training (module docstring, 3).
    offered, holdout = split_by_contributor(usable, args.holdout, args.min_contributors)
    training = cap_contributors(offered, args.contributor_cap)
    contributors = {"all": len({e.contributor for e in usable}),
                    "train": len({e.contributor for e in training}),
                    "holdout": len({e.contributor for e in holdout}),
                    "capped_events": len(offered) - len(training)}
    print(f"feedback contributors: {contributors['all']} ({contributors['train']} trained on, "
          f"{contributors['holdout']} held out); {contributors['capped_events']} events beyond the "
          "per-contributor caps left out")
    fb_xy, fb_y = feedback_rows(training)
    ho_xy, ho_y = feedback_rows(holdout)
    ho_who = np.concatenate([[e.contributor] * len(e.xy) for e in holdout]) if holdout else np.empty(0)
    final_idx = np.sort(np.concatenate([sp.train, sp.val]))
    negatives = Negatives.read(negative_paths(args))
    # The champion's configuration: a trained no_gesture class (as many hands) when its run had one.
    cap = champ_run.data.params.get("no_gesture_cap", "none")
    natural = NaturalHands.read(natural_paths(args)) if cap != "none" else None
    ctx = Context(data, sp, labels, {"sha256": ds.fingerprint()}, False, negatives, augmentation, natural,
                  None if cap in ("none", "all") else int(cap))
    X, y, _ = ctx.fit_rows(final_idx, final=True)
    X_ref = as_recorded(X, len(final_idx))  # the open-set reference: the rows as recorded (+ mirrors)
    if len(fb_y):
        X_fb = features_from_xy(augmentation.expand(fb_xy))
        X, y = np.vstack([X, X_fb]), np.concatenate([y, np.tile(fb_y, augmentation.factor)])
        X_ref = np.vstack([X_ref, as_recorded(X_fb, len(fb_y))])
    X_test, y_test = data.X[sp.test], data.y[sp.test]
    X_ho = features_from_xy(ho_xy) if len(ho_y) else np.empty((0, X.shape[1]), dtype=np.float32)

    # `gesture-maze train`'s steps for one candidate: the open-set head from the candidate fitted on
    # the train split (temperature and threshold chosen on validation + held-out negatives), carried
    # over to the final fit whose rows (feedback included) become its reference.
    min_accept = args.min_accept
    if min_accept is None:
        min_accept = float(champ_run.data.params.get("min_accept", DEFAULT_MIN_ACCEPT))
    head_model = build(candidate).fit(*ctx.fit_rows(sp.train)[:2])
    open_fit = fit_openset(ctx, head_model, sp.train, min_accept)
    model = build(candidate).fit(X, y)
    head = open_fit.head.with_reference(_wrap(model, candidate.name).scaled(X_ref))
    champion = load_registered(REGISTERED_MODEL_NAME, str(champ.version), tracking_uri=tracking_uri)
    if champion.openset is not None:  # the champion's no_gesture cut and duel sigmoid (its LOSO folds)
        head.no_gesture_min = champion.openset.no_gesture_min
        head.duel = champion.openset.duel
    challenger = _wrap(model, candidate.name, head)
    expansion = compile_expansion(challenger, args.expansion_size, data.X[sp.val])
    challenger.use_expansion(expansion)  # the gate judges what would be served
    empty = np.empty(0, dtype=str)
    gate, new, old = evaluate(
        _predict(challenger, X_test), _predict(champion, X_test), y_test,
        _answers(challenger, X_ho) if len(ho_y) else empty, _answers(champion, X_ho) if len(ho_y) else empty,
        ho_y, labels, args.max_class_drop, ho_who, args.min_contributors, args.max_class_flip,
    )
    open_test = evaluate_open_set(challenger, X_test, negatives.test if negatives else None)
    if negatives is not None and NO_GESTURE not in challenger.classes:  # the head knows them all
        head = head.with_negatives(challenger.scaled(negatives.known(include_test=True)))

    base_fp = {**loaded.fingerprint(), "split_test": len(sp.test)}
    lineage = {"parent_version": str(champ.version), "parent_run_id": champ.run_id, "base_data": base_fp,
               "feedback": {"url": _redact(feedback_url), "stored_events": stored, "all": fb_all,
                            "train": fingerprint(training), "holdout": fingerprint(holdout),
                            "contributors": contributors}}
    experiment_id = ensure_experiment(client, args.experiment, data_dir)
    mlflow.set_experiment(experiment_id=experiment_id)
    tags = {"stage": "retrain", "parent_version": str(champ.version), "data_sha256": base_fp["sha256"],
            "feedback_sha256": fb_all["sha256"], "feedback_events": str(fb_all["events"]),
            "feedback_frames": str(fb_all["frames"]), "feedback_contributors": str(contributors["all"]),
            "family": candidate.family,
            "feature_version": champ_run.data.tags.get("feature_version", "")}
    with mlflow.start_run(run_name=f"retrain-{datetime.now(UTC):%Y%m%d-%H%M%S}") as run:
        mlflow.set_tags(tags)
        mlflow.log_params({"family": candidate.family, **candidate.params, "train_rows": len(y),
                           "min_accept": min_accept, **augmentation.params(), "no_gesture_cap": cap,
                           "negatives_files": ",".join(Path(f).name for f in (negatives.files if negatives
                                                                               else ())),
                           "feedback_train_events": len(training), "feedback_train_frames": len(fb_y),
                           "feedback_holdout_events": len(holdout), "parent_version": str(champ.version),
                           "feedback_train_contributors": contributors["train"],
                           "feedback_holdout_contributors": contributors["holdout"],
                           "feedback_capped_events": contributors["capped_events"],
                           "contributor_cap": args.contributor_cap,
                           "min_contributors": args.min_contributors, "max_class_flip": args.max_class_flip})
        champion_metrics = {f"champion_{k}": v for k, v in old.metrics("test_").items()}
        mlflow.log_metrics({**new.metrics("test_"), **champion_metrics,
                            "worst_class_f1_drop": gate.worst_class_drop, "promoted": float(gate.passed),
                            "worst_class_flip_rows": float(gate.flip_rows)})
        if gate.feedback_accuracy is not None:
            mlflow.log_metrics({"feedback_holdout_accuracy": gate.feedback_accuracy,
                                "feedback_holdout_contributors": float(gate.holdout_contributors),
                                "champion_feedback_holdout_accuracy": gate.champion_feedback_accuracy or 0.0})
        mlflow.log_dict(lineage, "lineage.json")
        mlflow.log_dict(gate.to_dict(), "gate.json")
        mlflow.log_text(new.report, "test_classification_report.txt")
        mlflow.log_metrics({f"ood_test_{k}": float(v) for k, v in open_test.items()})
        with tempfile.TemporaryDirectory() as tmp_name:
            _log_openset(mlflow, open_fit, Path(tmp_name))
            _log_model(mlflow, model, X_test, ctx, openset=head.save(Path(tmp_name) / OPENSET_FILE),
                       expansion=expansion and expansion.save(Path(tmp_name) / EXPANSION_FILE))
        drift.log_reference(mlflow, X, y)
        version = register(client, run.info.run_id, "model", {**tags, "test_f1_macro": f"{new.f1_macro:.4f}",
                                                               "promoted": str(gate.passed).lower()})
        if gate.passed:
            set_champion(client, version)
        mlflow.set_tags({"registered_version": version, "promoted": str(gate.passed).lower()})

    print(f"challenger v{version} ({len(training)} feedback events trained on, {len(holdout)} held out): "
          f"test macro-F1 {gate.test_f1:.4f} vs champion {gate.champion_test_f1:.4f}; worst class drop "
          f"{gate.worst_class} {gate.worst_class_drop:+.4f}; feedback slice accuracy "
          f"{_fmt(gate.feedback_accuracy)} vs {_fmt(gate.champion_feedback_accuracy)}")
    if gate.passed:
        print(f"promoted: champion -> v{version} (was v{champ.version})")
    else:
        print(f"not promoted (champion stays v{champ.version}): " + "; ".join(gate.reasons()))
    print(json.dumps({"version": version, "promoted": gate.passed, "parent_version": str(champ.version)}))
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _redact(url: str) -> str:
    """A database URL without its password (lineage is visible to anyone who can read MLflow)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable url>"


if __name__ == "__main__":
    raise SystemExit(main())
