"""`gesture-maze loadtest` runs from a fresh clone: a copy of the repository's files with nothing beside it.

The copy holds exactly what git would commit (tracked files plus new, not ignored ones) and sits in a
temporary folder with no `shared/` next to it; the tool runs from it as a separate process, as a
user would, against a real server, and must pass its own `--check` with real hands found and moves made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO_ROOT, require_binary
from tests.support.server import live_server


def copy_checkout(target: Path) -> Path:
    git = require_binary("git")
    listed = subprocess.run(
        [git, "-C", str(REPO_ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True, timeout=60,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def test_loadtest_from_a_fresh_clone(settings, tmp_path) -> None:
    clone = copy_checkout(tmp_path / "clone" / "gesture-maze")
    assert not (clone.parent / "shared").exists()
    env = {k: v for k, v in os.environ.items() if k != "GM_SHARED_DIR"}
    env |= {"PYTHONPATH": str(clone), "PYTHONDONTWRITEBYTECODE": "1"}
    report_path = tmp_path / "report.json"
    with live_server(settings) as server:
        done = subprocess.run(
            [sys.executable, "-m", "stream.cli", "loadtest", "--url", server.http_url, "--players", "2",
             "--duration", "5", "--check", "--no-progress", "--json", str(report_path)],
            cwd=clone, env=env, capture_output=True, text=True, timeout=180, check=False,
        )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    bundled = clone / "stream" / "loadtest" / "images"
    assert f"frames from {bundled}" in done.stderr  # the clone's own photos, not a folder outside it
    report = json.loads(report_path.read_text())
    assert report["images"]["dir"] == str(bundled)
    assert {"like", "dislike"} <= set(report["images"]["gestures"])
    assert report["error_count"] == 0 and report["players_without_replies"] == 0
    assert report["frames"]["hands"] > 0  # MediaPipe found the bundled hands
    assert report["frames"]["recognised"] > 0  # and the classifier named them as labelled
    assert report["moves"]["seen"] > 0 and report["moves"]["wrong_direction"] == 0
