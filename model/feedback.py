"""Players' corrections ("undo — that was wrong"), stored in a real database through SQLAlchemy.

One row per undone gesture move: what the model predicted, the right label when the player gave one,
and the landmarks of the frames that fired the move (x,y of the 21 points, pixel-proportional, the
form `model.features.features_from_xy` takes). Never images. Rows exist only for players who opted
in; the server checks consent before it calls `add`.

Every row names its **contributor**: an opaque id of who sent it (the server's keyed hash of the
client address, never the address itself; `session:<key>` for rows without one, e.g. rows stored
before the column existed or imported without a source). The store's bounds are fair between
contributors (docs/security.md, "Feedback, retraining and donations"):

- `max_per_session`: at most this many rows per game (session key); more are refused
  (`FeedbackRefused`);
- `max_per_contributor`: at most this many rows per contributor; beyond it that contributor's own
  oldest row makes room (nobody else's);
- `max_events`: the table's size; when full, the oldest row of the contributor holding the MOST rows
  is deleted, so one source cannot push out everybody else's corrections.

The URL picks the backend: `sqlite:///<GM_DATA_DIR>/feedback.db` by default, any SQLAlchemy URL
(e.g. `postgresql+psycopg://...`, driver installed separately) in production. A database made before
the `contributor` column existed is migrated when opened (column added, filled from the session key).
Every method blocks: the server calls them from a worker thread, never on the event loop.
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
MAX_CONTRIBUTOR_CHARS = 48


FEEDBACK_URL_ENV = "GM_FEEDBACK_URL"


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
    contributor: str = ""  # opaque id of the source (keyed hash of the address); "" -> session:<key>

    @property
    def source(self) -> str:
        """The contributor the row is stored under."""
        return contributor_of(self.contributor, self.session_key)


@dataclass(frozen=True)
class StoredFeedback:
    id: int
    predicted: str
    label: str | None
    session_key: str
    origin: str
    created_at: float
    xy: np.ndarray  # (n_frames, 21, 2)
    contributor: str = ""


@dataclass(frozen=True)
class Added:
    """What `FeedbackStore.add_event` did: the new row's id and the rows it deleted, by reason
    (`contributor_cap`: the same contributor's oldest; `table_full`: the largest contributor's oldest)."""

    id: int
    evicted: dict[str, int]


class FeedbackRefused(Exception):
    """The store keeps no more rows of this game (`reason` = "game_total")."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def contributor_of(contributor: str, session_key: str) -> str:
    """The id a row is grouped by: its contributor, else its session key, else "unknown"."""
    if contributor:
        return contributor[:MAX_CONTRIBUTOR_CHARS]
    return f"session:{session_key[:32]}" if session_key else "unknown"


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
        sa.Column("contributor", sa.String(MAX_CONTRIBUTOR_CHARS), nullable=False, default="",
                  server_default=""),
        sa.Index("ix_feedback_contributor", "contributor", "id"),
        sa.Index("ix_feedback_session_key", "session_key"),
    )
    return metadata, table


def _migrate(engine: Any, table: Any) -> None:
    """Bring a table made by an older version up to this schema: add `contributor` (filled with
    `session:<session_key>`, the best grouping the old rows allow) and the indexes."""
    import sqlalchemy as sa

    columns = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
    if "contributor" not in columns:
        with engine.begin() as conn:
            conn.execute(sa.text(
                f"ALTER TABLE {table.name} ADD COLUMN contributor VARCHAR({MAX_CONTRIBUTOR_CHARS}) "
                "NOT NULL DEFAULT ''"
            ))
            t = table
            conn.execute(t.update().where(t.c.contributor == "").where(t.c.session_key != "")
                         .values(contributor=sa.literal("session:") + t.c.session_key))
            conn.execute(t.update().where(t.c.contributor == "").values(contributor="unknown"))
    for index in table.indexes:
        index.create(engine, checkfirst=True)


class FeedbackStore:
    """The feedback table behind a SQLAlchemy engine (created on first use, migrated on open).

    `max_per_contributor` / `max_per_session` of 0 mean no such cap."""

    def __init__(self, url: str, *, max_events: int = DEFAULT_MAX_EVENTS, max_per_contributor: int = 0,
                 max_per_session: int = 0) -> None:
        import sqlalchemy as sa

        if max_events < 1:
            raise ValueError("max_events must be >= 1")
        if max_per_contributor < 0 or max_per_session < 0:
            raise ValueError("per-contributor and per-session caps must be >= 0 (0 = no cap)")
        self.url = url
        self.max_events = max_events
        self.max_per_contributor = max_per_contributor
        self.max_per_session = max_per_session
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self._engine = sa.create_engine(url, future=True)
        self._metadata, self._table = _schema()
        self._metadata.create_all(self._engine)
        _migrate(self._engine, self._table)

    def close(self) -> None:
        self._engine.dispose()

    def add(self, event: FeedbackEvent) -> int:
        """Insert one event; the new row's id (see `add_event`)."""
        return self.add_event(event).id

    def add_event(self, event: FeedbackEvent) -> Added:
        """Insert one event (frames beyond MAX_FRAMES_PER_EVENT are cut) within the caps: raises
        `FeedbackRefused` when its game holds `max_per_session` rows; deletes the contributor's own
        oldest rows beyond `max_per_contributor`, then, while the table holds more than `max_events`,
        the oldest row of the contributor holding the most rows (ties: the one with the oldest row)."""
        import sqlalchemy as sa

        frames = [np.asarray(f, dtype=np.float64).reshape(N_LANDMARKS, 2) for f in event.frames]
        frames = frames[-MAX_FRAMES_PER_EVENT:]
        if not frames:
            raise ValueError("a feedback event needs the landmarks of at least one frame")
        landmarks = json.dumps([np.round(f, 6).tolist() for f in frames], separators=(",", ":"))
        t = self._table
        session_key = event.session_key[:32]
        contributor = event.source
        evicted: dict[str, int] = {}
        with self._engine.begin() as conn:
            if self.max_per_session and session_key:
                held = conn.execute(sa.select(sa.func.count()).select_from(t)
                                    .where(t.c.session_key == session_key)).scalar_one()
                if held >= self.max_per_session:
                    raise FeedbackRefused("game_total", f"this game stored {held} corrections already")
            result = conn.execute(
                t.insert().values(
                    created_at=float(event.created_at),
                    contributor=contributor,
                    session_key=session_key,
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
            if self.max_per_contributor:
                own = conn.execute(sa.select(sa.func.count()).select_from(t)
                                   .where(t.c.contributor == contributor)).scalar_one()
                if own > self.max_per_contributor:
                    evicted["contributor_cap"] = self._delete_oldest(conn, contributor,
                                                                     own - self.max_per_contributor)
            total = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            while total > self.max_events:
                largest = conn.execute(
                    sa.select(t.c.contributor, sa.func.count().label("n"))
                    .group_by(t.c.contributor)
                    .order_by(sa.func.count().desc(), sa.func.min(t.c.id)).limit(2)
                ).all()
                top, n_top = largest[0]
                n_next = largest[1][1] if len(largest) > 1 else 0
                # Down to the next-largest contributor at most, then they are compared again.
                deleted = self._delete_oldest(conn, top, min(total - self.max_events, max(1, n_top - n_next)))
                evicted["table_full"] = evicted.get("table_full", 0) + deleted
                total -= deleted
        return Added(new_id, evicted)

    def _delete_oldest(self, conn: Any, contributor: str, n: int) -> int:
        import sqlalchemy as sa

        t = self._table
        ids = conn.execute(sa.select(t.c.id).where(t.c.contributor == contributor)
                           .order_by(t.c.id).limit(n)).scalars().all()
        if ids:
            conn.execute(t.delete().where(t.c.id.in_(ids)))
        return len(ids)

    def counts_by_contributor(self) -> dict[str, int]:
        """Rows per contributor (for operators and tests)."""
        import sqlalchemy as sa

        t = self._table
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.contributor, sa.func.count()).group_by(t.c.contributor)).all()
        return {str(c): int(n) for c, n in rows}

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
                                          row["origin"], float(row["created_at"]), xy,
                                          contributor_of(row["contributor"], row["session_key"])))
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
