"""A real `mlflow server` (the package's own, from the training extra) on a free loopback port: a
tracking server and registry behind REST, as an operator runs one, backed by a temporary directory."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port, stop_process


@contextlib.contextmanager
def mlflow_server(workdir: Path, timeout: float = 120.0) -> Iterator[str]:
    """Yields the server's URL (`http://127.0.0.1:PORT`) once `/health` answers; stopped on exit."""
    executable = Path(sys.executable).with_name("mlflow")
    if not executable.exists():
        pytest.skip("the `mlflow` command (training extra) is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [str(executable), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
         "--artifacts-destination", str(workdir / "artifacts")],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {process.stderr.read().decode()[-1500:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not become healthy")
            time.sleep(0.2)
        yield url
    finally:
        stop_process(process)
