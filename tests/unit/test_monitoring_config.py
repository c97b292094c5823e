"""Monitoring as code is checked against the app: every metric and label that prometheus.yml's alert
rules and the Grafana dashboard query is one `stream.metrics.Metrics` really exports, and promtool
accepts the config and proves the alerts fire on synthetic series."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from stream.metrics import Metrics
from tests.support.paths import REPO_ROOT, require_binary

MONITORING = REPO_ROOT / "monitoring"
PROMETHEUS_YML = MONITORING / "prometheus.yml"
RULES_DIR = MONITORING / "rules"
RULE_TESTS = sorted((MONITORING / "tests").glob("*.yml"))
DASHBOARD = MONITORING / "grafana" / "dashboards" / "gesture-maze.json"
DATASOURCES = MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = MONITORING / "grafana" / "provisioning" / "dashboards" / "gesture-maze.yml"

# Series Prometheus adds itself, and the target labels it attaches to every scraped series.
SYNTHETIC_SERIES = {"up": set()}
TARGET_LABELS = {"job", "instance"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan"}


def exported_series() -> dict[str, set[str]]:
    """Sample name -> label names, exactly as the app's /metrics renders them.

    Labelled metrics render no samples until a child exists, so one child of each is created first;
    the sample names (with _total/_bucket/_sum/_count/_created/_info) then come from prometheus-client.
    """
    metrics = Metrics()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase) and value._labelnames:
            value.labels(*["x"] * len(value._labelnames))
    series: dict[str, set[str]] = dict(SYNTHETIC_SERIES)
    for family in metrics.registry.collect():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    info = metrics.model_info._name + "_info"  # Info labels are whatever the app reports: any allowed
    series[info] = {"*"}
    return series


def rule_exprs() -> Iterator[tuple[str, str]]:
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield f"{path.name}:{rule.get('alert') or rule.get('record')}", rule["expr"]


def dashboard_panels() -> list[dict]:
    return json.loads(DASHBOARD.read_text())["panels"]


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            yield f"{panel['title']}/{target['refId']}", target["expr"]


ALL_EXPRS = list(rule_exprs()) + list(dashboard_exprs())


def parse(expr: str) -> tuple[set[str], list[tuple[str, set[str]]], set[str]]:
    """(metric names, [(metric, matcher label names)], grouping label names) of a PromQL expression.

    Deliberately strict: any bare identifier that is not a function, keyword or grouping label is
    taken as a metric name, so a typo cannot hide.
    """
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # string literals
    text = re.sub(r"\[[^\]]*\]", "", text)  # range windows, incl. $__rate_interval
    grouping: set[str] = set()
    for clause in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        grouping.update(name.strip() for name in clause.split(",") if name.strip())
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    selectors = [
        (name, set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers)))
        for name, matchers in re.findall(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", text)
    ]
    text = re.sub(r"\{[^}]*\}", " ", text)
    names = {
        token
        for token in re.findall(r"(?<![\w.$:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", text)
        if token.lower() not in PROMQL_WORDS
    }
    return names, selectors, grouping


def test_parser_is_strict_enough_to_catch_typos() -> None:
    names, selectors, grouping = parse(
        "histogram_quantile(0.95, sum by (le, stage) "
        '(rate(gesture_maze_stage_secs_bucket{stage="total"}[5m]))) > 0.1 and on() up == 0'
    )
    assert names == {"gesture_maze_stage_secs_bucket", "up"}
    assert selectors == [("gesture_maze_stage_secs_bucket", {"stage"})]
    assert grouping == {"le", "stage"}
    assert "gesture_maze_stage_secs_bucket" not in exported_series()


def test_exported_series_include_suffixes_prometheus_client_adds() -> None:
    series = exported_series()
    for name in ("gesture_maze_frames_received_total", "gesture_maze_stage_seconds_bucket",
                 "gesture_maze_stage_seconds_count", "gesture_maze_ws_connections", "gesture_maze_model_info",
                 "process_cpu_seconds_total"):
        assert name in series, name
    assert series["gesture_maze_stage_seconds_bucket"] == {"stage", "le"}
    assert "gesture_maze_frames_received" not in series  # counters are only exported with _total


@pytest.mark.parametrize("where, expr", ALL_EXPRS, ids=[where for where, _ in ALL_EXPRS])
def test_every_queried_metric_and_label_is_exported(where: str, expr: str) -> None:
    series = exported_series()
    names, selectors, grouping = parse(expr)
    assert names, f"{where}: no metric found in {expr!r}"
    unknown = sorted(names - set(series))
    assert not unknown, f"{where} queries metrics the app does not export: {unknown}"
    for name, labels in selectors:
        allowed = series[name] | TARGET_LABELS
        if "*" not in allowed:
            assert labels <= allowed, f"{where}: {name} has no label(s) {sorted(labels - allowed)}"
    available = set().union(*(series[name] for name in names)) | TARGET_LABELS
    assert grouping <= available, f"{where}: groups by unknown label(s) {sorted(grouping - available)}"


def test_alert_rules_cover_the_required_failure_modes() -> None:
    exprs = dict(rule_exprs())
    alerts = {where.split(":", 1)[1]: expr for where, expr in exprs.items()}
    assert "up{" in alerts["GestureMazeDown"]
    assert 'gesture_maze_stage_seconds_bucket{stage="total"}' in alerts["GestureMazeFrameLatencyHigh"]
    assert 'gesture_maze_frames_hand_total{detected="true"}' in alerts["GestureMazeHandDetectionCollapsed"]
    assert "gesture_maze_frames_dropped_total" in alerts["GestureMazeFramesDropped"]
    assert "gesture_maze_errors_total" in alerts["GestureMazeErrorRateHigh"]
    assert 'gesture_maze_ws_connections{role="player"}' in alerts["GestureMazeNoFramesWithPlayers"]
    assert "gesture_maze_undos_total" in alerts["GestureMazeUndoRateHigh"]
    assert 'gesture_maze_drift_score{kind="out_of_range"}' in alerts["GestureMazeFeatureDrift"]
    assert 'gesture_maze_drift_score{kind="brightness_psi"}' in alerts["GestureMazeInputQualityDrift"]
    for path in RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                assert rule["labels"]["severity"] in {"critical", "warning", "info"}
                assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_dashboard_has_a_row_per_category_and_wires_the_provisioned_datasource() -> None:
    panels = dashboard_panels()
    rows = ["Model", "Data", "Server", "Live quality", "Drift"]
    assert [p["title"] for p in panels if p["type"] == "row"] == rows
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    datasource = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert all(t["datasource"]["uid"] == datasource["uid"] for t in panel["targets"])
    # Each category row has panels under it.
    rows = [i for i, p in enumerate(panels) if p["type"] == "row"] + [len(panels)]
    assert all(b - a > 2 for a, b in itertools.pairwise(rows))
    provider = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == "/etc/grafana/dashboards"


def test_prometheus_scrapes_the_app_metrics_endpoint() -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "gesture-maze"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    # Every replica of compose service `app` (docker-compose.yml scales it behind the proxy).
    assert job["dns_sd_configs"][0]["names"] == ["app"] and job["dns_sd_configs"][0]["port"] == 8000
    assert config["rule_files"] == ["rules/*.yml"]


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    promtool = require_binary("promtool")
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_config_and_rules() -> None:
    result = _promtool("check", "config", PROMETHEUS_YML)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout
    result = _promtool("check", "rules", *sorted(RULES_DIR.glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_tests_show_alerts_firing() -> None:
    assert RULE_TESTS
    fired = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            fired |= {t["alertname"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert len(fired) >= 2, fired
    result = _promtool("test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every panel query (as a recording rule; Grafana's $__rate_interval -> 1m)."""
    rules = [
        {"record": f"dashboard:panel_{i}", "expr": expr.replace("$__rate_interval", "1m")}
        for i, (_, expr) in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout
