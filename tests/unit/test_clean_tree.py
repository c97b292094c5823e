"""The clean-checkout check (tests/support/clean_tree.py) on a real, throw-away git repository."""

from __future__ import annotations

import subprocess

from tests.support.clean_tree import changes, snapshot
from tests.support.paths import REPO_ROOT, require_binary


def test_new_and_changed_files_are_reported_and_caches_are_not(tmp_path) -> None:
    git = require_binary("git")
    subprocess.run([git, "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("*.db\n__pycache__/\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("a = 1\n")
    (tmp_path / "edited.txt").write_text("b\n")
    subprocess.run([git, "-C", str(tmp_path), "add", "-A"], check=True)
    identity = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([git, "-C", str(tmp_path), *identity, "commit", "-qm", "t"], check=True)
    (tmp_path / "edited.txt").write_text("b, edited before the run\n")
    before = snapshot(tmp_path)
    assert before is not None
    (tmp_path / "edited.txt").write_text("b, and again during the run\n")
    (tmp_path / "mlflow.db").write_bytes(b"sqlite")  # ignored by git, still a write into the checkout
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"")
    (tmp_path / ".pytest_cache").mkdir()
    after = snapshot(tmp_path)
    assert after is not None
    assert changes(before, after) == ["edited.txt", "mlflow.db"]
    assert changes(after, snapshot(tmp_path)) == []


def test_outside_a_git_checkout_there_is_nothing_to_compare(tmp_path) -> None:
    assert snapshot(tmp_path) is None


def test_no_database_or_run_store_is_tracked() -> None:
    git = require_binary("git")
    patterns = ["*.db", "*.sqlite", "*.sqlite3", "*mlruns/*", "*mlartifacts/*"]
    tracked = subprocess.run(
        [git, "-C", str(REPO_ROOT), "ls-files", *patterns],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert tracked == [], f"local state is committed: {tracked}"
