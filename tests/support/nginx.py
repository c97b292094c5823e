"""nginx in front of one or more backends, run by the tests with the shipped config.

`running_nginx(backends, tmp_path) -> Iterator[Nginx]` renders `deploy/nginx/gesture-maze.conf`
(its `# gm:upstream` server line becomes one line per backend, its `# gm:listen` line a random
loopback port, and so does the scrape listener's `# gm:metrics-listen` line: `Nginx.metrics_port`)
inside a minimal main config whose prefix, pid, temp paths and logs all live in `tmp_path`; nginx
runs in the foreground (`daemon off`) and is stopped (SIGQUIT, then SIGKILL) on exit.
`backends` are "host:port" strings: several give a scaled-out deployment.
The shared include files (deploy/nginx/includes/) are linked into the config directory, where the
configs' relative `include includes/...` paths resolve (nginx resolves them against the directory
of the main config file, as /etc/nginx/ in production).
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import LoopbackUrls, free_port, stop_process
from tests.support.paths import REPO_ROOT, require_binary

SITE_CONF = REPO_ROOT / "deploy" / "nginx" / "gesture-maze.conf"
INCLUDES_DIR = REPO_ROOT / "deploy" / "nginx" / "includes"
NGINX = "/usr/sbin/nginx"

_MAIN = """\
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/site.conf;
}}
"""


@dataclass
class Nginx(LoopbackUrls):
    port: int
    prefix: Path
    process: subprocess.Popen[bytes]
    metrics_port: int | None = None  # the scrape listener (gesture-maze.conf), bound to 127.0.0.1


    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def render_site(backends: Sequence[str], port: int, metrics_port: int | None = None) -> str:
    site = SITE_CONF.read_text()
    upstream = "\n".join(f"    server {backend};" for backend in backends)
    site, found = re.subn(r"^ *server [^;]+; *# gm:upstream$", upstream, site, flags=re.MULTILINE)
    assert found == 1, "the site config lost its `# gm:upstream` line"
    listen = f"    listen 127.0.0.1:{port};"
    site, found = re.subn(r"^ *listen [^;]+; *# gm:listen$", listen, site, flags=re.MULTILINE)
    assert found == 1, "the site config lost its `# gm:listen` line"
    metrics = f"    listen 127.0.0.1:{metrics_port or free_port()};"
    site, found = re.subn(r"^ *listen [^;]+; *# gm:metrics-listen$", metrics, site, flags=re.MULTILINE)
    assert found == 1, "the site config lost its `# gm:metrics-listen` line"
    return site


def link_includes(conf_dir: Path) -> None:
    """Make `include includes/<file>.conf` in a config under `conf_dir` find the shipped files."""
    (conf_dir / "includes").symlink_to(INCLUDES_DIR, target_is_directory=True)


@contextlib.contextmanager
def serve_nginx(command: Sequence[str], port: int, prefix: Path, timeout_s: float = 10.0) -> Iterator[Nginx]:
    """Check the config, run nginx in the foreground until it listens on `port`, stop it on exit."""
    check = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"nginx rejected the config:\n{check.stderr}")
    process = subprocess.Popen(list(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    nginx = Nginx(port, prefix, process)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                stderr = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"nginx exited: {stderr}{nginx.error_log()[-1000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start listening: {nginx.error_log()[-1000:]}")
            time.sleep(0.05)
        yield nginx
    finally:
        stop_process(process, signal.SIGQUIT, grace_s=5)  # graceful: finish open requests


@contextlib.contextmanager
def running_nginx(backends: Sequence[str], tmp_path: Path, timeout_s: float = 10.0) -> Iterator[Nginx]:
    binary = require_binary(NGINX)
    if not backends:
        raise ValueError("nginx needs at least one backend")
    prefix = tmp_path / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    port, metrics_port = free_port(), free_port()
    (prefix / "site.conf").write_text(render_site(backends, port, metrics_port))
    (prefix / "nginx.conf").write_text(_MAIN.format(prefix=prefix))
    link_includes(prefix)
    command = [str(binary), "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
    with serve_nginx(command, port, prefix, timeout_s) as nginx:
        nginx.metrics_port = metrics_port
        yield nginx
