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
    "Bus",
    "OwnershipLost",
    "SessionRecord",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "check_store_url",
    "open_store",
    "store_is_shared",
    "token_hash",
]


class StoreError(ValueError):
    """GM_STORE_URL names a backend that cannot be used."""


def store_is_shared(url: str | None) -> bool:
    """Whether several processes/instances may use this store together."""
    return bool(url) and url.partition("://")[0] in {"redis", "rediss"}


def check_store_url(url: str | None) -> str:
    """The backend GM_STORE_URL names ("sqlite" or "redis"); StoreError if it cannot be used."""
    if not url:
        return "sqlite"
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StoreError(f"GM_STORE_URL must look like scheme://..., got {url!r}")
    if scheme == "sqlite":
        if not rest.lstrip("/"):
            raise StoreError("sqlite:// needs a file path, e.g. sqlite:///data/sessions.db")
        return "sqlite"
    if scheme in {"redis", "rediss"}:
        try:
            import redis.asyncio  # noqa: F401 - the optional dependency must be installed
        except ImportError as exc:
            hint = "pip install 'gesture-maze[redis]'"
            raise StoreError(f"{scheme}:// needs redis-py: {hint} ({exc})") from None
        return "redis"
    raise StoreError(f"unknown GM_STORE_URL scheme {scheme!r} (use sqlite or redis)")


def open_store(url: str | None, *, data_dir: str, lease_s: float) -> Store:
    backend = check_store_url(url)
    if backend == "redis":
        from stream.store.redis import RedisStore

        assert url is not None
        return RedisStore(url, lease_s=lease_s)
    from stream.store.sqlite import SqliteStore

    if not url:
        return SqliteStore(Path(data_dir) / "sessions.db")
    rest = url.partition("://")[2]
    return SqliteStore(rest[1:] if rest.startswith("/") else rest)  # sqlite:///rel, sqlite:////abs
