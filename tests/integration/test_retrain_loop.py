"""The whole loop over real parts: a misread corrected by players -> `gesture-maze retrain` -> promoted
-> the running server hot-swaps -> the same hand, over the play socket, is now read right. Poisoned
feedback is registered but not promoted. All of it visible in MLflow with lineage.

The hand: a `three` held turned 90 degrees. Over the socket it is the real photo rotated with cv2; in
the store, real `three` rows of the data set rotated by the same matrix (earlier games, imported).

Issue 26, item 7 (docs/decisions/0021-retrain-gate-across-contributors.md), in order:
1. ONE player (one address, several games) labels that hand `peace`: 3 corrections over the socket + 20
   from earlier games = 23, the issue's attack. Not promoted: the gate is not carried by one source.
2. Honest corrections (`three`) from six players (one over the socket from another address, five
   imported), with the poison still in the store: promoted; the server now reads the hand as `three`.
3. `like` labelled `dislike` from six sybil contributors: not promoted (the `like` test rows flip).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect

from model.classifier import CHAMPION_ALIAS, REGISTERED_MODEL_NAME, load_classifier
from model.datasets import read_landmark_csv
from model.features import features_from_xy
from model.feedback import FeedbackEvent, FeedbackStore, StoredFeedback
from model.schemes import DEFAULT_COUNTING_MAP
from stream.settings import Settings
from tests.integration.test_gesture_stream import BLANK, Peer, stream
from tests.support.frames import jittered_frames, load_rgb
from tests.support.paths import REPO_ROOT
from tests.support.server import LiveServer
from tests.unit.test_train import run_train, write_subset

pytestmark = pytest.mark.slow  # one quick training run, three retrains (~2.5 min)

PERSON_GESTURE = "three"
ANGLE = 90.0
PERSON_IMPORTED = 20  # rows from earlier sessions of the same person, imported as feedback
CHAMPION_URI = f"models:/{REGISTERED_MODEL_NAME}@{CHAMPION_ALIAS}"
DIRECTIONS = dict(DEFAULT_COUNTING_MAP)


def rotation(width: float, height: float) -> np.ndarray:
    return cv2.getRotationMatrix2D((width / 2, height / 2), ANGLE, 1.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory, landmarks_csv, gestures_dir):
    tmp = tmp_path_factory.mktemp("loop")
    subset = write_subset(landmarks_csv, tmp / "subset.csv", per_class=210, seed=1)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri, "GM_DATA_DIR": str(tmp / "data")}
    # The world is the subset alone (no data/gestures rows) and no rotated copies (they would teach some
    # of the person's 90-degree turn): a small champion with the person's systematic misread.
    run_train("--data", str(subset), "--quick", "--no-loso", "--no-train-only", "--rotated-copies", "0",
              env=env)
    photo = load_rgb(gestures_dir / f"{PERSON_GESTURE}.jpg")
    h, w = photo.shape[:2]
    rotated = cv2.warpAffine(photo, rotation(w, h), (w, h), borderMode=cv2.BORDER_REPLICATE)
    frames = jittered_frames(rotated, 6, seed=2)
    return {"tmp": tmp, "subset": subset, "uri": uri, "env": env, "frames": frames}


def person_rows(landmarks_csv, start: int, count: int) -> np.ndarray:
    """Real `three` rows (kp42), scaled to pixels and turned like the person's hand."""
    ds = read_landmark_csv(landmarks_csv)
    rows = ds.xy[ds.labels == PERSON_GESTURE][start : start + count] * 150.0
    matrix = rotation(0.0, 0.0)[:, :2]
    return rows @ matrix.T


ATTACKER, HONEST = "127.0.0.3", "127.0.0.2"  # loopback addresses of their own (127.0.0.0/8)
ATTACK_LABEL = "peace"
HONEST_PLAYERS, HONEST_EACH = 5, 4  # imported players besides the one over the socket
# Fixed, so the contributors' held-out ranking is too: with this key the attacker is one of the three
# contributors held out in step 2 (with them among those trained on, capped to 5 events against 15
# honest ones, the challenger lost one `three` test row and was refused: docs/decisions/0021).
SECRET = "retrain-loop-test-contributor-secret"


@asynccontextmanager
async def game_from(server: LiveServer, address: str) -> AsyncIterator[Peer]:
    """A new session created and played from `address`."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=server.http_url, transport=transport) as http:
        created = (await http.post("/api/sessions", json={"seed": 11})).json()
    async with connect(server.ws_url + created["play_url"], max_size=None, local_addr=(address, 0)) as ws:
        player = Peer(ws)
        await player.wait_for(lambda p: bool(p.of("welcome")) and bool(p.of("state")))
        try:
            yield player
        finally:
            await player.close()


def retrain(world, feedback_url: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "stream.cli", "retrain", "--data", str(world["subset"]), "--no-train-only",
         "--feedback-url", feedback_url, "--experiment", "loop-test"],
        cwd=REPO_ROOT, env={**os.environ, **world["env"]}, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(result.stdout)
    return json.loads(result.stdout.strip().splitlines()[-1])


async def read_person(server: LiveServer, world, *, consent: bool, undo: bool,
                      address: str = "127.0.0.1", label: str = PERSON_GESTURE) -> list[str]:
    """Stream the turned hand from `address`; optionally undo the move it fired, naming `label`."""
    async with game_from(server, address) as player:
        if consent:
            await player.ws.send('{"type":"consent","feedback":true}')
        sequence = [BLANK, *world["frames"], BLANK]
        await stream(player, sequence, lockstep=True)
        await player.wait_for(lambda p: p.replies() >= len(sequence))
        await player.flush()
        read = [m["gesture"] for m in player.of("frame") if m["hand"]]
        if undo:
            assert player.gesture_moves(), f"the misread fired no move: {read}"
            await player.ws.send(json.dumps({"type": "undo", "label": label}))
            await player.wait_for(lambda p: bool(p.of("undone")))
            assert player.of("undone")[-1]["stored"] is True
        moves = player.gesture_moves()
        return read + [f"move:{m}" for m in moves]


def read_json(path: str) -> dict:
    return json.loads(Path(path).read_text())


def stored_events(url: str, count: int) -> list[StoredFeedback]:
    """The store's rows once it holds `count` (the recorder writes from its own thread)."""
    store = FeedbackStore(url)
    try:
        deadline = time.monotonic() + 30
        while store.count() < count:
            assert time.monotonic() < deadline, f"{store.count()} rows stored, {count} expected"
            time.sleep(0.05)
        return store.events()
    finally:
        store.close()


def import_rows(url: str, rows: np.ndarray, label: str, contributor: str, games: int,
                predicted: str = "four") -> None:
    """Earlier games of one contributor (`games` session keys), as the store would hold them."""
    store = FeedbackStore(url)
    try:
        for i, xy in enumerate(rows):
            key = f"{contributor[:20]}-g{i % games}"
            store.add(FeedbackEvent(predicted, 0.9, label, "left", [xy], session_key=key, origin="import",
                                    contributor=contributor))
    finally:
        store.close()


async def wait_for_version(server: LiveServer, version: str) -> None:
    deadline = time.monotonic() + 60
    while server.app.state.services.models.current.info.version != version:
        assert time.monotonic() < deadline, "the server did not hot-swap to the new champion"
        await asyncio.sleep(0.2)


async def test_one_players_poison_is_refused_and_several_players_corrections_are_promoted(
    world, landmarks_csv, monkeypatch
):
    from mlflow.tracking import MlflowClient

    uri, tmp = world["uri"], world["tmp"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    champion = load_classifier(CHAMPION_URI, tracking_uri=uri)
    probe = person_rows(landmarks_csv, 100, 50)
    before = np.asarray(champion.classes)[champion.predict_proba(features_from_xy(probe)).argmax(1)]
    assert np.mean(before != PERSON_GESTURE) > 0.6, Counter(before.tolist())  # a systematic misread
    assert np.mean(before == ATTACK_LABEL) < 0.2, Counter(before.tolist())

    settings = Settings.from_env({"GESTURE_MODEL_URI": CHAMPION_URI, "MLFLOW_TRACKING_URI": uri}).replace(
        data_dir=str(tmp / "data"), model_poll_s=0.5, drift_interval_s=0, contributor_secret=SECRET
    )
    feedback_url = f"sqlite:///{tmp / 'data' / 'feedback.db'}"
    server = LiveServer(settings).start(timeout=120)
    try:
        # 1. One player, three games over the socket from their own address, labels the turned `three`
        #    `peace`; 20 more from their earlier games (same contributor) = the 23.
        for _ in range(3):
            await read_person(server, world, consent=True, undo=True, address=ATTACKER, label=ATTACK_LABEL)
        played = stored_events(feedback_url, 3)
        attacker = {e.contributor for e in played}
        assert len(attacker) == 1 and len({e.session_key for e in played}) == 3  # three games, one source
        (attacker_id,) = attacker
        assert attacker_id.startswith("a-") and ATTACKER not in attacker_id
        earlier = person_rows(landmarks_csv, HONEST_PLAYERS * HONEST_EACH, PERSON_IMPORTED)
        import_rows(feedback_url, earlier, ATTACK_LABEL, attacker_id, 4)
        outcome = await asyncio.to_thread(retrain, world, feedback_url)
        assert outcome == {"version": "2", "promoted": False, "parent_version": "1"}

        # 2. Honest corrections from six players (the poison still stored): one over the socket from
        #    another address, five imported (their earlier games).
        await read_person(server, world, consent=True, undo=True, address=HONEST)
        honest_played = [e for e in stored_events(feedback_url, 3 + PERSON_IMPORTED + 1)
                         if e.contributor != attacker_id]
        assert len(honest_played) == 1 and honest_played[0].label == PERSON_GESTURE
        for n in range(HONEST_PLAYERS):
            rows = person_rows(landmarks_csv, n * HONEST_EACH, HONEST_EACH)
            import_rows(feedback_url, rows, PERSON_GESTURE, f"a-player{n}", 2)
        outcome = await asyncio.to_thread(retrain, world, feedback_url)
        assert outcome == {"version": "3", "promoted": True, "parent_version": "1"}
        await wait_for_version(server, "3")
        seen = await read_person(server, world, consent=False, undo=False)
        gestures = [g for g in seen if not g.startswith("move:")]
        assert Counter(gestures).most_common(1)[0][0] == PERSON_GESTURE, gestures
        assert f"move:{DIRECTIONS[PERSON_GESTURE]}" in seen
        new = load_classifier(CHAMPION_URI, tracking_uri=uri)
        # Trained like `gesture-maze train`: with the open-set head, so it still answers no_gesture.
        assert new.openset is not None and np.isfinite(new.openset.threshold)
        after = np.asarray(new.classes)[new.predict_proba(features_from_xy(probe)).argmax(1)]
        print("unseen turned `three` rows after the promotion:", dict(Counter(after.tolist())))
        assert np.mean(after == PERSON_GESTURE) > 0.7, Counter(after.tolist())
        assert np.mean(after == ATTACK_LABEL) < 0.2, Counter(after.tolist())

        # 3. `like` hands labelled `dislike` from six sybil contributors: not promoted.
        ds = read_landmark_csv(landmarks_csv)
        for n, rows in enumerate(np.array_split(ds.xy[ds.labels == "like"][:150] * 150.0, 6)):
            import_rows(f"sqlite:///{tmp / 'poison.db'}", rows, "dislike", f"a-sybil{n}", 3, predicted="like")
        outcome = await asyncio.to_thread(retrain, world, f"sqlite:///{tmp / 'poison.db'}")
        assert outcome == {"version": "4", "promoted": False, "parent_version": "3"}  # v2 was refused
        await asyncio.sleep(1.5)  # three poll periods: the server must still serve v3
        assert server.app.state.services.models.current.info.version == "3"
    finally:
        server.stop()

    # 4. Lineage in MLflow: parent versions, feedback fingerprints (ids, counts, contributors), the gate.
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert str(client.get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS).version) == "3"
    v2, v3, v4 = (client.get_model_version(REGISTERED_MODEL_NAME, v) for v in ("2", "3", "4"))
    lineage_tags = ("parent_version", "promoted", "feedback_events", "feedback_contributors")
    honest_events = 1 + HONEST_PLAYERS * HONEST_EACH
    assert tuple(v2.tags[t] for t in lineage_tags) == ("1", "false", "23", "1")
    assert tuple(v3.tags[t] for t in lineage_tags) == ("1", "true", str(23 + honest_events), "7")
    assert tuple(v4.tags[t] for t in lineage_tags) == ("3", "false", "150", "6")
    # Retrains are augmented as the champion's run was (here: mirrors only).
    assert {client.get_run(v.run_id).data.params["rotated_copies"] for v in (v2, v3, v4)} == {"0"}
    gates = {}
    for version, events in ((v2, 23), (v3, 23 + honest_events), (v4, 150)):
        data = read_json(client.download_artifacts(version.run_id, "lineage.json", str(tmp)))
        feedback = data["feedback"]["all"]
        assert feedback["events"] == events and sum(b - a + 1 for a, b in feedback["ids"]) == events
        # Events beyond the per-contributor caps are neither trained on nor held out.
        assert (data["feedback"]["train"]["events"] + data["feedback"]["holdout"]["events"]
                + data["feedback"]["contributors"]["capped_events"]) == events
        assert len(data["base_data"]["sha256"]) == 64
        gate = read_json(client.download_artifacts(version.run_id, "gate.json", str(tmp)))
        gates[str(version.version)] = gate
        print(f"v{version.version} gate:", json.dumps(gate))
        assert gate["passed"] is (version is v3)
        assert "drift_reference.json" in {a.path for a in client.list_artifacts(version.run_id)}
    # v2: one contributor cannot be judged by anyone else.
    assert gates["2"]["holdout_contributors"] == 0
    assert any("contributor" in reason for reason in gates["2"]["reasons"])
    # v3: judged by three contributors it never learned from (the attacker among them: their rows
    # neither trained it nor, counted once, outvoted the two honest judges); trained on four players.
    assert gates["3"]["holdout_contributors"] == 3
    v3_lineage = read_json(client.download_artifacts(v3.run_id, "lineage.json", str(tmp)))["feedback"]
    assert v3_lineage["contributors"] == {"all": 7, "train": 4, "holdout": 3, "capped_events": 0}
    assert set(v3_lineage["train"]["per_label"]) == {PERSON_GESTURE}
    # v4: the poisoned class's test rows turn (and its F1 drops).
    assert any("like" in reason for reason in gates["4"]["reasons"])
