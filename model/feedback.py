"""Players' corrections ("undo — that was wrong"), stored in a real database through SQLAlchemy.

One row per undone gesture move: what the model predicted, the right label when the player gave one,
and the landmarks of the frames that fired the move (x,y of the 21 points, pixel-proportional, the
form `model.features.features_from_xy` takes). Never images. Rows exist only for players who opted
in; the server checks consent before it calls `add`.

The URL picks the backend: `sqlite:///<GM_DATA_DIR>/feedback.db` by default, any SQLAlchemy URL
(e.g. `postgresql+psycopg://...`, driver installed separately) in production. The store is bounded:
beyond `max_events` rows the oldest are deleted. Every method blocks: the server calls them from a
worker thread, never on the event loop.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.features import N_LANDMARKS

DEFAULT_MAX_EVENTS = 50_000
MAX_FRAMES_PER_EVENT = 16
MAX_LABEL_CHARS = 40


FEEDBACK_URL_ENV = "GM_FEEDBACK_URL"


def default_feedback_url(data_dir: str | Path) -> str:
    return f"sqlite:///{Path(data_dir).expanduser().resolve() / 'feedback.db'}"


def configured_feedback_url(environ: Mapping[str, str]) -> str | None:
    """`GM_FEEDBACK_URL` from the `environ` passed in (empty counts as unset, as in the server's settings)."""
    return environ.get(FEEDBACK_URL_ENV) or None


@dataclass(frozen=True)
class FeedbackEvent:
    """One correction as the server records it."""

    predicted: str
    confidence: float
    label: str | None  # the right gesture, None when the player only said "wrong"
    direction: str
    frames: Sequence[np.ndarray]  # (21, 2) x,y per frame that fired the move
    model_version: str = ""
    session_key: str = ""  # random per session (not the session id): groups one player's rows
    origin: str = "play"  # play | import
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class StoredFeedback:
    id: int
    predicted: str
    label: str | None
    session_key: str
    origin: str
    created_at: float
    xy: np.ndarray  # (n_frames, 21, 2)


def _schema() -> tuple[Any, Any]:
    import sqlalchemy as sa

    metadata = sa.MetaData()
    table = sa.Table(
        "feedback",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.Float, nullable=False, index=True),
        sa.Column("session_key", sa.String(32), nullable=False, default=""),
        sa.Column("origin", sa.String(16), nullable=False, default="play"),
        sa.Column("predicted", sa.String(MAX_LABEL_CHARS), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("label", sa.String(MAX_LABEL_CHARS), nullable=True),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False, default=""),
        sa.Column("n_frames", sa.Integer, nullable=False),
        sa.Column("landmarks", sa.Text, nullable=False),  # JSON [[[x, y] * 21] * n_frames]
    )
    return metadata, table


class FeedbackStore:
    """The feedback table behind a SQLAlchemy engine (created on first use)."""

    def __init__(self, url: str, *, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        import sqlalchemy as sa

        if max_events < 1:
            raise ValueError("max_events must be >= 1")
        self.url = url
        self.max_events = max_events
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self._engine = sa.create_engine(url, future=True)
        self._metadata, self._table = _schema()
        self._metadata.create_all(self._engine)

    def close(self) -> None:
        self._engine.dispose()

    def add(self, event: FeedbackEvent) -> int:
        """Insert one event (frames beyond MAX_FRAMES_PER_EVENT are cut); prunes the oldest rows."""
        import sqlalchemy as sa

        frames = [np.asarray(f, dtype=np.float64).reshape(N_LANDMARKS, 2) for f in event.frames]
        frames = frames[-MAX_FRAMES_PER_EVENT:]
        if not frames:
            raise ValueError("a feedback event needs the landmarks of at least one frame")
        landmarks = json.dumps([np.round(f, 6).tolist() for f in frames], separators=(",", ":"))
        t = self._table
        with self._engine.begin() as conn:
            result = conn.execute(
                t.insert().values(
                    created_at=float(event.created_at),
                    session_key=event.session_key[:32],
                    origin=event.origin[:16],
                    predicted=event.predicted[:MAX_LABEL_CHARS],
                    confidence=float(event.confidence),
                    label=None if event.label is None else event.label[:MAX_LABEL_CHARS],
                    direction=event.direction[:8],
                    model_version=event.model_version[:64],
                    n_frames=len(frames),
                    landmarks=landmarks,
                )
            )
            new_id = int(result.inserted_primary_key[0])
            count = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            if count > self.max_events:
                cutoff = conn.execute(
                    sa.select(t.c.id).order_by(t.c.id.desc()).offset(self.max_events - 1).limit(1)
                ).scalar_one()
                conn.execute(t.delete().where(t.c.id < cutoff))
        return new_id

    def count(self) -> int:
        import sqlalchemy as sa

        with self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self._table)).scalar_one())

    def events(self, *, labelled_only: bool = False) -> list[StoredFeedback]:
        """Every stored event (oldest first), optionally only those with a right label."""
        import sqlalchemy as sa

        t = self._table
        query = sa.select(t).order_by(t.c.id)
        if labelled_only:
            query = query.where(t.c.label.is_not(None))
        out = []
        with self._engine.connect() as conn:
            for row in conn.execute(query).mappings():
                xy = np.asarray(json.loads(row["landmarks"]), dtype=np.float64).reshape(-1, N_LANDMARKS, 2)
                out.append(StoredFeedback(int(row["id"]), row["predicted"], row["label"], row["session_key"],
                                          row["origin"], float(row["created_at"]), xy))
        return out


def fingerprint(events: Sequence[StoredFeedback]) -> dict[str, Any]:
    """What a model was trained on from feedback: ids, counts per label, and a digest of the rows."""
    digest = hashlib.sha256()
    per_label: dict[str, int] = {}
    for event in events:
        digest.update(f"{event.id}\x1f{event.label}\x1e".encode())
        digest.update(np.ascontiguousarray(event.xy, dtype="<f8").tobytes())
        key = str(event.label)
        per_label[key] = per_label.get(key, 0) + 1
    return {
        "sha256": digest.hexdigest(),
        "events": len(events),
        "frames": int(sum(len(e.xy) for e in events)),
        "per_label": dict(sorted(per_label.items())),
        "ids": _ranges([e.id for e in events]),
    }


def _ranges(ids: Sequence[int]) -> list[list[int]]:
    """[1,2,3,7,8] -> [[1,3],[7,8]]: every id, compactly (ids are mostly consecutive)."""
    out: list[list[int]] = []
    for i in sorted(ids):
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out
