"""Where the web client's files are: the `frontend` package's data, wherever it is installed."""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def frontend_dir() -> Path:
    """The installed `frontend` package's directory (a checkout in development, site-packages in a
    wheel install). Raises RuntimeError when it is missing: a server without its client is broken."""
    root = importlib.resources.files("frontend")
    path = Path(str(root))
    if not (path / "index.html").is_file():
        raise RuntimeError(f"the web client is missing from {path}: reinstall gesture-maze")
    return path
