"""The embedded default store: one SQLite file under GM_DATA_DIR (WAL), no service needed.

It survives a restart (and a SIGKILL: WAL with synchronous=NORMAL keeps every committed write once
the process is gone), but it is NOT shared: one server process owns the file, so the lease is the
process itself and there is no event bus. Play's writes and reads run on one dedicated thread;
the lobby listing reads on a second thread with its own connection (WAL lets it read beside the
writer), so listing games never waits in line with a move. Neither ever runs on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from stream.store.base import SessionRecord, Store, StoreUnavailable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    public INTEGER NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    version INTEGER NOT NULL,
    record TEXT NOT NULL,
    summary TEXT
)
"""
_LISTED = (
    "SELECT COALESCE(summary, json_extract(record, '$.summary')) FROM sessions"
    " WHERE public = 1 AND expires_at >= ? ORDER BY created_at LIMIT ?"
)


class SqliteStore(Store):
    backend = "sqlite"
    shared = False

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gm-sqlite")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gm-sqlite-lobby")
        self._db: sqlite3.Connection | None = None
        self._lobby_db: sqlite3.Connection | None = None  # opened in the reader thread

    async def _run(self, fn: Any, *args: Any, executor: ThreadPoolExecutor | None = None) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(executor or self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
        if "summary" not in columns:  # a file written before summaries had their own column
            db.execute("ALTER TABLE sessions ADD COLUMN summary TEXT")
        db.execute("DELETE FROM sessions WHERE expires_at < ?", (time.time(),))
        self._db = db

    async def start(self) -> None:
        await self._run(self._open)

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        def shut_reader() -> None:
            if self._lobby_db is not None:
                self._lobby_db.close()
                self._lobby_db = None

        await self._run(shut_reader, executor=self._reader)
        await self._run(shut)
        self._reader.shutdown(wait=True)
        self._executor.shutdown(wait=True)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError("store not started")
        return self._db

    async def save(self, record: SessionRecord, owner: str, ttl_s: float, event: bytes | None = None) -> None:
        row = (
            record.session_id, int(record.public), record.created_at, time.time() + ttl_s,
            record.version, record.to_json(), json.dumps(record.summary, separators=(",", ":")),
        )

        def write() -> None:
            self.db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)", row)

        await self._run(write)

    async def load(self, session_id: str) -> SessionRecord | None:
        def read() -> str | None:
            found = self.db.execute(
                "SELECT record FROM sessions WHERE id = ? AND expires_at >= ?", (session_id, time.time())
            ).fetchone()
            return found[0] if found else None

        text = await self._run(read)
        return SessionRecord.from_json(text) if text else None

    async def touch(self, session_ids: list[str], owner: str, ttl_s: float) -> tuple[list[str], list[str]]:
        expires = time.time() + ttl_s
        rows = [(expires, session_id) for session_id in session_ids]
        await self._run(lambda: self.db.executemany("UPDATE sessions SET expires_at = ? WHERE id = ?", rows))
        return [], []

    async def delete(self, session_id: str, owner: str) -> None:
        await self._run(lambda: self.db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)))

    async def list_public(self, limit: int) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            if self._lobby_db is None:
                self._lobby_db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            rows = self._lobby_db.execute(_LISTED, (time.time(), limit)).fetchall()
            return [json.loads(text) for (text,) in rows if text]  # decoded here, not on the loop

        return await self._run(read, executor=self._reader)
