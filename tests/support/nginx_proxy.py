"""The real nginx (Debian package) running deploy/nginx/cluster.conf against live upstreams.

The config is used as shipped except for what differs between compose and a test: the upstream
servers (compose's `app:8000` -> the test's replicas), the listen port, and paths nginx writes to
(pid, logs, temp files -> a temporary directory), which are passed on the command line. The shared
include files are linked next to it, as compose mounts them next to /etc/nginx/nginx.conf.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from tests.support.net import free_port
from tests.support.nginx import NGINX, link_includes, serve_nginx
from tests.support.paths import REPO_ROOT, require_binary

CLUSTER_CONF = REPO_ROOT / "deploy" / "nginx" / "cluster.conf"
UPSTREAM_LINE = re.compile(r"^(\s*)server app:8000 (.*)$", re.MULTILINE)


def render(conf: str, upstreams: list[str], port: int, workdir: Path) -> str:
    match = UPSTREAM_LINE.search(conf)
    assert match is not None, "cluster.conf has no `server app:8000 ...` upstream line"
    indent, options = match.groups()
    servers = "\n".join(f"{indent}server {address} {options}" for address in upstreams)
    conf = UPSTREAM_LINE.sub(lambda _: servers, conf, count=1)
    assert "listen 8080;" in conf
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = "\n".join(f"    {kind}_temp_path {workdir / kind};" for kind in kinds)
    return conf.replace("http {", f"http {{\n    access_log off;\n{temp}", 1)


@contextlib.contextmanager
def nginx_proxy(upstreams: list[str], workdir: Path) -> Iterator[str]:
    """Yields the proxy's base URL (http://127.0.0.1:port)."""
    binary = require_binary(NGINX)
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(render(CLUSTER_CONF.read_text(), upstreams, port, workdir))
    link_includes(workdir)
    globals_ = f"daemon off; pid {workdir / 'nginx.pid'}; error_log {workdir / 'error.log'} warn;"
    if os.geteuid() == 0:
        globals_ += " user root;"  # workers may write the temporary directory
    command = [str(binary), "-p", str(workdir), "-c", str(conf), "-g", globals_]
    with serve_nginx(command, port, workdir) as nginx:
        yield nginx.http_url
