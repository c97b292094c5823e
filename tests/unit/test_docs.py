"""The documentation: the site builds strictly and names everything the code defines; README is a front page.

The site is built once per run with `mkdocs build --strict` into a temporary directory (CI therefore
fails on a broken link or anchor), and the completeness checks read the built HTML: what a reader sees.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import stream
from model.frames import FRAME_ERROR_CODES
from stream import protocol
from stream.metrics import PREFIX, Metrics
from stream.protocol import codes
from stream.settings import documented_settings
from tests.support.paths import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
MKDOCS_ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def build_site(config: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(out)],
        capture_output=True, text=True, timeout=300, env=MKDOCS_ENV, check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = build_site(REPO_ROOT / "mkdocs.yml", out)
    log = built.stdout[-3000:] + "\n" + built.stderr[-6000:]
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    return out


@pytest.fixture(scope="module")
def site_text(site: Path) -> str:
    """Every page's HTML, code spans as `name`, entities decoded."""
    pages = [p.read_text(encoding="utf-8") for p in site.rglob("*.html")]
    text = "\n".join(pages)
    text = re.sub(r"<code[^>]*>(.*?)</code>", lambda m: "`" + re.sub(r"<[^>]+>", "", m.group(1)) + "`", text,
                  flags=re.DOTALL)
    return html.unescape(text)


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO_ROOT / "docs" / "_hooks" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the site -----------------------------------------------------------------------------------------
def test_every_setting_is_documented(site_text: str) -> None:
    settings = documented_settings()
    assert len(settings) >= 30
    undocumented = [env for env, _default, doc in settings if len(doc.strip()) < 10]
    assert not undocumented, f"settings without a description in stream/settings.py: {undocumented}"
    missing = [env for env, _default, _doc in settings if f"`{env}`" not in site_text]
    assert not missing, f"settings missing from the docs site: {missing}"


def test_every_metric_is_documented(site_text: str) -> None:
    families = list(Metrics(process=False).registry.collect())
    names = {f.name for f in families if f.name.startswith(PREFIX)}
    assert len(names) >= 20
    undocumented = sorted(f.name for f in families if len(f.documentation.strip()) < 10)
    assert not undocumented, f"metrics without a help text in stream/metrics.py: {undocumented}"
    missing = sorted(name for name in names if f"`{name}" not in site_text)
    assert not missing, f"metrics missing from the docs site: {missing}"


def _stream_sources() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in Path(stream.__file__).parent.rglob("*.py"))


def message_types() -> set[str]:
    """Every client and server message type: the protocol package registers each one once."""
    return set(protocol.CLIENT_TYPES) | set(protocol.SERVER_TYPES)


def error_codes() -> set[str]:
    """Codes of `error` messages and REST error bodies (stream.protocol.codes), and frame errors."""
    return set(codes.error_codes()) | set(FRAME_ERROR_CODES)


def test_every_message_type_is_documented(site_text: str) -> None:
    types = message_types()
    assert {"move", "ping", "welcome", "state", "frame", "error"} <= types
    missing = sorted(t for t in types if f"`{t}`" not in site_text)
    assert not missing, f"message types missing from the docs site: {missing}"


def test_every_error_code_is_documented(site_text: str) -> None:
    codes = error_codes()
    assert {"bad_json", "corrupt_jpeg", "not_found", "server_busy"} <= codes
    missing = sorted(c for c in codes if f"`{c}`" not in site_text)
    assert not missing, f"error codes missing from the docs site: {missing}"


def test_every_decision_record_is_listed_and_in_the_nav(site: Path) -> None:
    records = sorted((REPO_ROOT / "docs" / "decisions").glob("*.md"))
    records = [r for r in records if r.name != "index.md"]
    assert len(records) >= 3
    index = (site / "decisions" / "index.html").read_text(encoding="utf-8")
    home = (site / "index.html").read_text(encoding="utf-8")  # the nav is on every page
    for record in records:
        assert f'href="{record.stem}/"' in index, f"{record.name} is not listed on the decisions index"
        assert f"decisions/{record.stem}/" in home, f"{record.name} is not in the navigation"


def test_strict_build_fails_on_a_broken_anchor(tmp_path: Path) -> None:
    """The strict build catches links to headings that do not exist, not only to missing pages."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [the part](other.md#no-such-heading).\n")
    (docs / "other.md").write_text("# Other\n\n## A heading\n")
    config = tmp_path / "mkdocs.yml"
    main = (REPO_ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    validation = main[main.index("validation:"):main.index("markdown_extensions:")]
    config.write_text(f"site_name: t\ndocs_dir: docs\n{validation}")
    broken = build_site(config, tmp_path / "site")
    assert broken.returncode != 0
    assert "no-such-heading" in broken.stdout + broken.stderr
    (docs / "index.md").write_text("# Home\n\nSee [the part](other.md#a-heading).\n")
    assert build_site(config, tmp_path / "site").returncode == 0


# --- the generators -----------------------------------------------------------------------------------
def test_settings_and_metrics_tables_follow_the_blocks_of_their_source() -> None:
    hooks = _hooks()
    settings = hooks.settings_markdown()
    port = settings.index("`GM_PORT`")
    assert settings.index("## Server") < port < settings.index("## Maze and sessions")
    metrics = hooks.metrics_markdown()
    gestures = metrics.index("`gesture_maze_gestures_total`")
    assert metrics.index("## Model") < gestures < metrics.index("## Data")
    assert "`gesture_maze_stage_seconds_bucket, _sum, _count` | histogram | `stage`" in metrics
    source = "    # --- Feedback and drift (issue 15; docs/x.md) ---\n    a: int = _env(\n"
    assert hooks._blocks(source, re.compile(r"^\s+(\w+)\s*:[^=]+=\s*_env\(")) == {"a": "Feedback and drift"}


def test_decision_records_are_listed_in_issue_order(tmp_path: Path) -> None:
    hooks = _hooks()
    folder = tmp_path / "decisions"
    folder.mkdir()
    (folder / "index.md").write_text("# Decision records\n")
    (folder / "9-b.md").write_text("# Nine\n")
    (folder / "12-a.md").write_text("# Twelve\n")
    listing = hooks.decisions_markdown(tmp_path)
    assert listing.index("[Nine](9-b.md)") < listing.index("[Twelve](12-a.md)")
    assert "index.md" not in listing
    nav = hooks.complete_nav([{"Home": "index.md"}, {"Decisions": ["decisions/index.md"]}], tmp_path)
    assert nav[1]["Decisions"] == ["decisions/index.md", "decisions/9-b.md", "decisions/12-a.md"]
    (tmp_path / "index.md").write_text("# Home\n")
    (tmp_path / "extra.md").write_text("# Extra\n")
    nav = hooks.complete_nav([{"Home": "index.md"}, {"Decisions": ["decisions/index.md"]}], tmp_path)
    assert nav[-1] == {"More": ["extra.md"]}  # a page nobody added to nav is still reachable



def test_decision_records_are_numbered_in_sequence_with_their_number_in_the_title() -> None:
    records = sorted(p for p in (REPO_ROOT / "docs" / "decisions").glob("*.md") if p.name != "index.md")
    for expected, record in enumerate(records, 1):
        assert re.fullmatch(r"\d{4}-[a-z0-9]+(-[a-z0-9]+)*\.md", record.name), record.name
        assert int(record.name[:4]) == expected, f"{record.name}: numbers run 0001, 0002, ... without gaps"
        first = record.read_text(encoding="utf-8").splitlines()[0]
        assert re.fullmatch(rf"# {expected}\. \S.*", first), f"{record.name} starts with {first!r}"
    listing = _hooks().decisions_markdown()
    assert "| 1 | [" in listing and "Issue" not in listing

# --- README -------------------------------------------------------------------------------------------
def test_readme_is_a_front_page() -> None:
    lines = README.splitlines()
    assert len(lines) <= 400, f"README.md has {len(lines)} lines; the reference belongs in docs/"
    for link in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (REPO_ROOT / link).is_file(), f"README links to missing {link}"


def test_setup_commands_come_first_and_ci_runs_the_test_command() -> None:
    head = "\n".join(README.splitlines()[:40])
    commands = re.findall(r"^(python3\.11 -m venv .*)$", head, flags=re.MULTILINE)
    assert len(commands) == 2, commands
    assert any(c.endswith("gesture-maze serve") for c in commands)
    test_command = next(c for c in commands if "pytest" in c)
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci.splitlines(), "CI must run README's test command unchanged"


def test_readme_performance_headline_matches_the_published_results() -> None:
    """Republishing benchmark results without updating README's headline fails here."""
    results = REPO_ROOT / "docs" / "performance" / "results"
    capacity = json.loads((results / "capacity.json").read_text())
    stages = json.loads((results / "stages.json").read_text())
    ratio = re.search(r"\*\*([\d.]+)x the frames per CPU-second\*\*", README)
    cpu = re.search(r"\*\*([\d.]+) ms of CPU\*\* with the default lite hand model", README)
    assert ratio and cpu, "README lost its performance headline"
    assert float(ratio.group(1)) == round(capacity["summary"]["ratio_frames_per_core"], 1)
    lite = next(c for name, c in stages["configs"].items() if "lite" in name)
    assert float(cpu.group(1)) == round(lite["cpu_ms_per_frame"], 1)


def test_readme_edge_headline_matches_the_published_results() -> None:
    edge = json.loads((REPO_ROOT / "docs" / "performance" / "results" / "edge.json").read_text())["edge"]
    found = re.search(r"serves \*\*(\d+) players\*\* within p99 < 100 ms against (\d+) streaming JPEG\s+"
                      r"frames in the same run \(([\d.]+)x;[^)]*\), two\s+processes on Redis \*\*(\d+)\*\*",
                      README)
    assert found, "README lost its edge-mode headline"
    edge_n, ws_n, ratio, workers_n = found.groups()
    assert (int(edge_n), int(ws_n), int(workers_n)) == (
        edge["edge_max_players"], edge["ws_max_players"], edge["edge_workers_max_players"])
    assert float(ratio) == round(edge["edge_max_players"] / edge["ws_max_players"], 1)
