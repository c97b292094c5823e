"""Where the read-only shared data lives, and how tests require system binaries."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = Path(os.environ.get("GM_SHARED_DIR", REPO_ROOT.parent / "shared"))
IMAGES_DIR = SHARED_DIR / "data" / "images"
GESTURES_DIR = IMAGES_DIR / "gestures"
LANDMARKS_CSV = SHARED_DIR / "data" / "landmarks" / "landmarks_kp42.csv"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_binary(name: str) -> str:
    """Path of a system binary; a missing one fails in CI (where .ci/run installs it), skips elsewhere."""
    found = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
    if found:
        return found
    message = f"{name} is not installed (bash .ci/run installs it)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def require_path(path: Path) -> Path:
    if path.exists():
        return path
    message = f"{path} is missing (shared data must sit beside the repo)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
