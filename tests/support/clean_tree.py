"""pytest plugin: a test run leaves the checkout as it found it.

At the start of the session the checkout's `git status` (untracked, modified and ignored entries) is
recorded with each entry's size and modification time; at the end it is compared again. Anything new
or changed, other than the caches every Python tool keeps (and screenshots asked for with
$GM_ARTIFACTS_DIR), fails the run with the list of paths:
tests write to pytest's temporary directories, commands to `GM_DATA_DIR`. Outside a git checkout (an
unpacked sdist) or without git, the check is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

# Caches and environments: written by pytest, hypothesis, ruff, Python and pip by design.
CACHE_PARTS = {".pytest_cache", ".hypothesis", ".ruff_cache", "__pycache__", ".venv"}
CACHE_SUFFIXES = (".pyc", ".egg-info", ".egg-info/")

Snapshot = dict[str, tuple[int, int] | None]
_KEY = pytest.StashKey[Snapshot]()


def _is_cache(path: str) -> bool:
    parts = path.rstrip("/").split("/")
    return any(p in CACHE_PARTS or p.endswith(CACHE_SUFFIXES) for p in parts)


def snapshot(root: Path = REPO_ROOT) -> Snapshot | None:
    """{path: (size, mtime_ns) or None for a directory} of every non-clean entry of `git status`."""
    git = shutil.which("git")
    if git is None or not (root / ".git").exists():
        return None
    done = subprocess.run(
        [git, "-C", str(root), "status", "--porcelain=v1", "-z", "--ignored", "--untracked-files=normal"],
        capture_output=True, check=False, timeout=60,
    )
    if done.returncode != 0:
        return None
    entries: Snapshot = {}
    records = done.stdout.decode("utf-8", "surrogateescape").split("\0")
    for record in records:
        if len(record) < 4:
            continue
        path = record[3:]
        if _is_cache(path):
            continue
        full = root / path
        try:
            stat = full.stat()
        except OSError:  # deleted in the work tree
            entries[path] = (-1, -1)
            continue
        entries[path] = None if full.is_dir() else (stat.st_size, stat.st_mtime_ns)
    return entries


def _requested_output(path: str) -> bool:
    """Under $GM_ARTIFACTS_DIR, where the browser tests were asked to save their screenshots."""
    chosen = os.environ.get("GM_ARTIFACTS_DIR")
    if not chosen:
        return False
    folder = (REPO_ROOT / chosen).resolve()
    return (REPO_ROOT / path).resolve().is_relative_to(folder)


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    return sorted(path for path, state in after.items() if path not in before or before[path] != state)


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("GM_SKIP_CLEAN_TREE_CHECK"):
        return
    found = snapshot()
    if found is not None:
        session.stash[_KEY] = found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.stash.get(_KEY, None)
    if before is None:
        return
    after = snapshot()
    if after is None:
        return
    written = [path for path in changes(before, after) if not _requested_output(path)]
    if written:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = (
            "the test run wrote into the checkout (tests must use tmp_path, commands GM_DATA_DIR; "
            "set GM_SKIP_CLEAN_TREE_CHECK=1 while editing files during a run): "
            + ", ".join(written[:20]) + (" ..." if len(written) > 20 else "")
        )
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(message, red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
