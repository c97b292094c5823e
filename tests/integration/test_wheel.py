"""The wheel built from the checkout, installed normally (not editable) and run from another folder,
serves the web client: `/`, `/watch.html`, `/lobby.html` and `/js/player.js` come from the installed
`frontend` package's data, not from the checkout.

The wheel is built from a copy of the checkout (setuptools writes `build/` next to the sources) and
installed with `pip install --no-deps --target` into a temporary folder. The server then runs as its
own process with `python -S -P`: no site-packages processing, so the editable install's `.pth` finder
(which maps `stream`, `model`, `maze` and `frontend` to the checkout) is never loaded, and no current
directory on `sys.path`. Its path is the wheel's folder, then this venv's site-packages for the
dependencies (mediapipe and friends take minutes to install into a fresh venv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_loadtest_fresh_clone import copy_checkout
from tests.support.instance import Instance
from tests.support.paths import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])  # this venv's: the dependencies
ISOLATION = ("-S", "-P")  # no site (.pth files, editable finders), no current directory on sys.path
PAGES = {  # path -> (content type, text the page must contain)
    "/": ("text/html", "<html"),
    "/watch.html": ("text/html", "watch.js"),
    "/lobby.html": ("text/html", "lobby.js"),
    "/js/player.js": ("javascript", "LiveSocket"),
}


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the wheel was installed into (what site-packages would be)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = copy_checkout(tmp / "source")
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check")
    run(*pip, "wheel", "--quiet", "--no-deps", str(source), "-w", str(tmp / "dist"), cwd=tmp)
    (wheel,) = (tmp / "dist").glob("gesture_maze-*.whl")
    target = tmp / "site"
    run(*pip, "install", "--quiet", "--no-deps", "--target", str(target), str(wheel), cwd=tmp)
    return target


def isolated_env(target: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GM_", "PYTHON"))}
    return env | {"PYTHONPATH": os.pathsep.join([str(target), str(SITE_PACKAGES)]),
                  "PYTHONDONTWRITEBYTECODE": "1"}


class WheelInstance(Instance):
    """`python -m stream.cli serve` importing only from the wheel's folder (and the dependencies)."""

    def __init__(self, target: Path, workdir: Path) -> None:
        super().__init__({"GM_DATA_DIR": str(workdir / "data")}, log=workdir / "server.log")
        self.env = {k: v for k, v in self.env.items() if not k.startswith("PYTHON")} | isolated_env(target)
        self.workdir = workdir

    def launch(self) -> WheelInstance:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, *ISOLATION, "-m", "stream.cli", "serve"],
                env=self.env, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT,
            )
        return self


@pytest.fixture(scope="module")
def server(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WheelInstance]:
    instance = WheelInstance(installed, tmp_path_factory.mktemp("elsewhere"))
    try:
        yield instance.start()
    finally:
        instance.stop()


def test_the_installed_packages_are_imported_from_the_wheel_not_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    probe = (
        "import json, sys, stream, model, maze, frontend, stream.web.static as s;"
        "print(json.dumps({'files': [m.__file__ for m in (stream, model, maze, frontend)],"
        " 'frontend_dir': str(s.frontend_dir()), 'path': sys.path,"
        " 'finders': [repr(f) for f in sys.meta_path]}))"
    )
    done = subprocess.run([sys.executable, *ISOLATION, "-c", probe], cwd=tmp_path,
                          env=isolated_env(installed), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout)
    for file in seen["files"]:
        assert Path(file).is_relative_to(installed), file
    assert Path(seen["frontend_dir"]) == installed / "frontend"
    assert not any(Path(entry).resolve() == REPO_ROOT for entry in seen["path"] if entry)
    assert not any("__editable__" in finder for finder in seen["finders"])
    # The wheel carries the whole client (every file of the checkout's frontend/, nothing left behind).
    shipped = {p.relative_to(installed / "frontend") for p in (installed / "frontend").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    checkout = {p.relative_to(REPO_ROOT / "frontend") for p in (REPO_ROOT / "frontend").rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    assert shipped == checkout


def test_the_installed_server_serves_the_web_client(server: WheelInstance, installed: Path) -> None:
    for path, (content_type, needle) in PAGES.items():
        response = httpx.get(f"{server.http_url}{path}", timeout=10)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        assert content_type in response.headers["content-type"], (path, response.headers)
        assert needle in response.text, path
        shipped = installed / "frontend" / ("index.html" if path == "/" else path.lstrip("/"))
        assert response.text == shipped.read_text(), path
    assert httpx.get(f"{server.http_url}/health", timeout=10).status_code == 200
