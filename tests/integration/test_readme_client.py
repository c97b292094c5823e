"""The Python client of docs/protocol.md, taken verbatim, plays a level on a real server."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support.paths import REPO_ROOT
from tests.support.server import live_server


def _readme_client() -> str:
    protocol = (REPO_ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = protocol.split("Quick start: a complete Python client", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert match, "docs/protocol.md lost its Python quick-start client"
    return match.group(1)


def test_readme_client_plays_and_watches(settings, tmp_path) -> None:
    code = _readme_client()
    assert '"http://127.0.0.1:8000", "ws://127.0.0.1:8000"' in code
    with live_server(settings.replace(win_pause_s=0.2)) as server:
        # Only the server address changes: the documented client talks to this test's server.
        script = tmp_path / "client.py"
        script.write_text(code.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}"), encoding="utf-8")
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
        )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "'ok': True" in out and "'source': 'keyboard'" in out
    assert re.search(r"spectator: level 1 won in \d+ moves", out), out
    assert re.search(r"level 2 is \d+ wide", out), out
