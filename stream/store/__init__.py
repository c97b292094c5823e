"""Session stores chosen by URL (`GM_STORE_URL`); a backend's client library is imported only when used.

- unset / `sqlite:///path/sessions.db`: the embedded default (stream.store.sqlite), one process.
- `redis://host:port/db` (or `rediss://`): shared by several instances (stream.store.redis).
"""

from __future__ import annotations

from pathlib import Path

from stream.store.base import (
    Bus,
    OwnershipLost,
    SessionRecord,
    Store,
    StoreUnavailable,
    token_hash,
)

__all__ = [
    "Bus", "OwnershipLost", "SessionRecord", "Store", "StoreError", "StoreUnavailable", "open_store",
    "token_hash",
]


class StoreError(ValueError):
    """GM_STORE_URL names a backend that cannot be used."""


def open_store(url: str | None, *, data_dir: str, lease_s: float) -> Store:
    if not url:
        from stream.store.sqlite import SqliteStore

        return SqliteStore(Path(data_dir) / "sessions.db")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StoreError(f"GM_STORE_URL must look like scheme://..., got {url!r}")
    if scheme == "sqlite":
        from stream.store.sqlite import SqliteStore

        path = rest[1:] if rest.startswith("/") else rest  # sqlite:///rel, sqlite:////abs
        if not path:
            raise StoreError("sqlite:// needs a file path, e.g. sqlite:///data/sessions.db")
        return SqliteStore(path)
    if scheme in {"redis", "rediss"}:
        try:
            from stream.store.redis import RedisStore
        except ImportError as exc:  # the optional dependency is missing
            hint = "pip install 'gesture-maze[redis]'"
            raise StoreError(f"{scheme}:// needs redis-py: {hint} ({exc})") from None
        return RedisStore(url, lease_s=lease_s)
    raise StoreError(f"unknown GM_STORE_URL scheme {scheme!r} (use sqlite or redis)")
