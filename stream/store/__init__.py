"""Session stores chosen by URL (`GM_STORE_URL`); a backend's client library is imported only when used.

- unset / `sqlite:///path/sessions.db`: the embedded default (stream.store.sqlite), one process.
- `redis://host:port/db` (or `rediss://`): shared by several instances (stream.store.redis).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
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
    "BACKENDS",
    "Backend",
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


@dataclass(frozen=True, slots=True)
class Backend:
    """One session-store backend: the URL schemes it answers, whether several instances can share
    it, the optional library it needs (imported only when chosen) and how to open it."""

    name: str
    schemes: frozenset[str]
    shared: bool
    opener: Callable[[str | None, str, float], Store]  # (url, data_dir, lease_s), imports lazily
    library: str | None = None
    install_hint: str = ""


def _open_sqlite(url: str | None, data_dir: str, lease_s: float) -> Store:
    from stream.store.sqlite import SqliteStore

    if not url:
        return SqliteStore(Path(data_dir) / "sessions.db")
    rest = url.partition("://")[2]
    return SqliteStore(rest[1:] if rest.startswith("/") else rest)  # sqlite:///rel, sqlite:////abs


def _open_redis(url: str | None, data_dir: str, lease_s: float) -> Store:
    from stream.store.redis import RedisStore

    assert url is not None
    return RedisStore(url, lease_s=lease_s)


# The one backend switch: a new backend is one entry here plus its module.
BACKENDS: tuple[Backend, ...] = (
    Backend("sqlite", frozenset({"sqlite"}), shared=False, opener=_open_sqlite),
    Backend("redis", frozenset({"redis", "rediss"}), shared=True, opener=_open_redis,
            library="redis.asyncio", install_hint="pip install 'gesture-maze[redis]'"),
)
DEFAULT_BACKEND = BACKENDS[0]  # GM_STORE_URL unset: the embedded default


def _backend(url: str | None) -> Backend:
    if not url:
        return DEFAULT_BACKEND
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise StoreError(f"GM_STORE_URL must look like scheme://..., got {url!r}")
    for backend in BACKENDS:
        if scheme in backend.schemes:
            return backend
    names = ", ".join(sorted(s for b in BACKENDS for s in b.schemes))
    raise StoreError(f"unknown GM_STORE_URL scheme {scheme!r} (use one of {names})")


def store_is_shared(url: str | None) -> bool:
    """Whether several processes/instances may use this store together."""
    try:
        return _backend(url).shared
    except StoreError:
        return False


def check_store_url(url: str | None) -> str:
    """The backend GM_STORE_URL names ("sqlite" or "redis"); StoreError if it cannot be used."""
    backend = _backend(url)
    if url and backend.name == "sqlite" and not url.partition("://")[2].lstrip("/"):
        raise StoreError("sqlite:// needs a file path, e.g. sqlite:///data/sessions.db")
    if backend.library is not None:
        try:
            importlib.import_module(backend.library)  # the optional dependency must be installed
        except ImportError as exc:
            scheme = url.partition("://")[0] if url else backend.name
            raise StoreError(f"{scheme}:// needs {backend.library}: {backend.install_hint} ({exc})") from None
    return backend.name


def open_store(url: str | None, *, data_dir: str, lease_s: float) -> Store:
    check_store_url(url)
    return _backend(url).opener(url, data_dir, lease_s)
