"""A real `prometheus` process on a free loopback port scraping one target, with the repo's alert rules
and temp storage (the Prometheus integration test and `benchmarks.render_dashboard` both run one)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import yaml

from tests.support.net import free_port
from tests.support.paths import REPO_ROOT

RULES = REPO_ROOT / "monitoring" / "rules" / "alerts.yml"
JOB = "gesture-maze"



class PrometheusProcess:
    """`binary` scraping `target` (host:port) every `scrape_interval`; files live in `workdir`."""

    def __init__(self, binary: str, target: str, workdir: Path, scrape_interval: str = "1s") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "metrics_path": "/metrics",
                    "scrape_timeout": "1s",
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_target_up(self, timeout: float = 60.0) -> None:
        """Block until the first scrape of the target succeeded; RuntimeError with the log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                targets = httpx.get(f"{self.url}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
            except (httpx.HTTPError, KeyError, ValueError):
                targets = []
            if any(t["labels"].get("job") == JOB and t["health"] == "up" for t in targets):
                return
            time.sleep(0.5)
        raise RuntimeError(f"{JOB} target not up after {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self._log.close()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]
