"""README is the public contract: every setting and every exported metric must be documented there."""

from __future__ import annotations

import importlib.util
import re

from stream.metrics import PREFIX, Metrics
from stream.settings import documented_settings
from tests.support.paths import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented() -> None:
    missing = [env for env, _default, _doc in documented_settings() if f"`{env}`" not in README]
    assert not missing, f"settings missing from README: {missing}"


def test_every_metric_is_documented() -> None:
    names = {metric.name for metric in Metrics(process=False).registry.collect()}
    assert names, "Metrics exported nothing"
    missing = sorted(name for name in names if name.startswith(PREFIX) and name not in README)
    assert not missing, f"metrics missing from README: {missing}"


def test_readme_is_generated_from_docs() -> None:
    spec = importlib.util.spec_from_file_location("build_readme", REPO_ROOT / "docs" / "build_readme.py")
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    assert builder.build() == README, "README.md is stale: run `python docs/build_readme.py`"


def test_setup_commands_come_first() -> None:
    head = README.split("\n## ", 1)[0]
    commands = re.findall(r"^(python3\.11 -m venv .*)$", head, flags=re.MULTILINE)
    assert len(commands) == 2, commands
    assert any("gesture-maze serve" in c for c in commands)
    assert any("pytest" in c for c in commands)
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in ci, "CI must run README's test command unchanged"
