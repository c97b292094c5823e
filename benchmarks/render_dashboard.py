"""Render the Grafana dashboard's panels with matplotlib from a real Prometheus (Grafana is not installed).

Starts `gesture-maze serve`, a real `prometheus` (scraping it every 2 s, with the repo's alert rules),
drives traffic with `gesture-maze loadtest`, then runs every panel's PromQL from
monitoring/grafana/dashboards/gesture-maze.json through /api/v1/query_range and draws the panels in the
dashboard's own grid layout to docs/screenshots/dashboard.png.

    .venv/bin/python -m benchmarks.render_dashboard
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import EngFormatter, PercentFormatter

from benchmarks.common import REPO, RESULTS, run_loadtest, server
from tests.support.prometheus import PrometheusProcess

DASHBOARD = REPO / "monitoring" / "grafana" / "dashboards" / "gesture-maze.json"
OUTPUT = REPO / "docs" / "screenshots" / "dashboard.png"
SCRAPE = "2s"
STEP = 2.0
LOADTEST_ARGS = ["--players", "3", "--fps", "15", "--duration", "50", "--spectators", "1"]
# Grafana's $__rate_interval is max($__interval + timeInterval, 4 * timeInterval); the provisioned datasource
# sets timeInterval: 5s, so for a short range Grafana itself would use 20s (1m would never reach steady state
# within a 50 s load test).
RATE_INTERVAL = "20s"
VARIABLES = {"$__rate_interval": RATE_INTERVAL, "${__rate_interval}": RATE_INTERVAL, "$__interval": "15s",
             "${__interval}": "15s", "$__range": "5m", "$job": "gesture-maze", "${job}": "gesture-maze"}
COLORS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#f2495c", "#b877d9", "#8ab8ff", "#ff9830"]
BG, PANEL_BG, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"


def substitute(expr: str) -> str:
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name])
    return expr


def legend(fmt: str, labels: dict[str, str]) -> str:
    if fmt:
        text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
        return " ".join(text.split()) or fmt
    shown = {k: v for k, v in labels.items() if k not in ("__name__", "job", "instance")}
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or labels.get("__name__", "value")


def query_range(url: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query_range", timeout=30,
                         params={"query": expr, "start": start, "end": end, "step": STEP})
    response.raise_for_status()
    return response.json()["data"]["result"]


def collect(dashboard: dict[str, Any], url: str, start: float, end: float) -> list[dict[str, Any]]:
    """Every panel with its series: [(legend, [t...], [v...])], queried over [start, end]."""
    panels = []
    for panel in dashboard["panels"]:
        entry = {**panel, "series": []}
        for target in panel.get("targets", []):
            expr = substitute(target["expr"])
            for result in query_range(url, expr, start, end):
                times = [float(t) - start for t, _ in result["values"]]
                values = [float(v) for _, v in result["values"]]
                entry["series"].append((legend(target.get("legendFormat", ""), result["metric"]),
                                        times, values, result["metric"]))
        panels.append(entry)
    return panels


def formatter(unit: str | None) -> Any:
    return {
        "percentunit": PercentFormatter(1.0, decimals=0),
        "s": EngFormatter(unit="s", places=0),
        "bytes": EngFormatter(unit="B", places=0),
        "ops": EngFormatter(unit="/s"),
        "reqps": EngFormatter(unit="/s"),
        "px": EngFormatter(unit="px", places=0),
    }.get(unit or "", EngFormatter())


def draw(panels: list[dict[str, Any]], traffic: tuple[float, float], window: float, path: Path,
         subtitle: str) -> None:
    grid_h = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    header = 2.4  # grid units above the dashboard for the figure title
    total = grid_h + header
    unit_in = 0.34
    fig = plt.figure(figsize=(16, total * unit_in), dpi=100, facecolor=BG)
    fig.text(0.01, 1 - 0.55 / total, "Gesture Maze — monitoring/grafana/dashboards/gesture-maze.json",
             color=TEXT, fontsize=15, weight="bold", va="center")
    fig.text(0.01, 1 - 1.5 / total, subtitle, color="#8e8e8e", fontsize=9.5, va="center", linespacing=1.4)

    def rect(pos: dict[str, int], pad_l: float, pad_r: float, pad_t: float, pad_b: float) -> list[float]:
        left = pos["x"] / 24 + pad_l
        top = 1 - (pos["y"] + header) / total - pad_t / total
        bottom = 1 - (pos["y"] + header + pos["h"]) / total + pad_b / total
        return [left, bottom, pos["w"] / 24 - pad_l - pad_r, top - bottom]

    for panel in panels:
        pos = panel["gridPos"]
        if panel["type"] == "row":
            y = 1 - (pos["y"] + header + 0.5) / total
            fig.text(0.008, y, f"▾ {panel['title']}", color="#e0e0ee", fontsize=13, weight="bold",
                     va="center")
            fig.add_artist(plt.Line2D([0.008, 0.992], [y - 0.45 / total] * 2, color=GRID, lw=1))
            continue
        # Panel frame (the Grafana "card") and the plot area inside it.
        card = fig.add_axes(rect(pos, 0.004, 0.004, 0.15, 0.15))
        card.set_facecolor(PANEL_BG)
        card.set_xticks([])
        card.set_yticks([])
        for spine in card.spines.values():
            spine.set_color(GRID)
        card.text(0.015, 0.975, panel["title"], transform=card.transAxes, color=TEXT, fontsize=10,
                  weight="semibold", ha="left", va="top")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        series = panel["series"]
        if panel["type"] in ("table", "stat"):
            draw_text_panel(card, panel["type"], series, unit)
            continue
        ax = fig.add_axes(rect(pos, 0.042, 0.01, 1.15, 1.0), facecolor=PANEL_BG)
        ax.axvspan(*traffic, color="#5794f2", alpha=0.06, lw=0)
        for i, (label, times, values, _) in enumerate(series):
            ax.plot(times, values, color=COLORS[i % len(COLORS)], lw=1.4, label=label[:28])
        ax.yaxis.set_major_formatter(formatter(unit))
        ax.tick_params(colors="#9a9aa8", labelsize=7.5, length=2)
        ax.grid(color=GRID, lw=0.6)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_xlim(0, window)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("s since traffic start", color="#7a7a88", fontsize=7, labelpad=1)
        if series:
            ax.legend(loc="upper left", fontsize=7, ncol=2 if len(series) > 3 else 1, frameon=True,
                      facecolor=PANEL_BG, edgecolor=GRID, labelcolor=TEXT, framealpha=0.8,
                      handlelength=1.2, borderpad=0.3, labelspacing=0.25)
        else:
            ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", va="center",
                    color="#7a7a88", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, facecolor=BG, dpi=100)
    plt.close(fig)


def draw_text_panel(card: Any, kind: str, series: list[Any], unit: str | None) -> None:
    if not series:
        card.text(0.5, 0.45, "No data", ha="center", va="center", color="#7a7a88", fontsize=11)
        return
    if kind == "stat":
        label, _, values, _ = series[0]
        value = values[-1]
        text = ("UP" if value == 1 else "DOWN") if "up" in label or unit == "none" else f"{value:g}"
        card.text(0.5, 0.45, text, ha="center", va="center", fontsize=34, weight="bold",
                  color="#73bf69" if value == 1 else "#f2495c")
        card.text(0.5, 0.15, label, ha="center", va="center", fontsize=8, color="#9a9aa8")
        return
    # table: one line per label of the latest sample (gesture_maze_model_info is an info metric)
    lines = []
    for _, _, _, metric in series:
        lines += [f"{k}: {v}" for k, v in metric.items() if k not in ("__name__", "job", "instance")]
    card.text(0.04, 0.82, "\n".join(line[:44] for line in lines[:10]), ha="left", va="top", fontsize=8,
              color=TEXT, family="monospace", linespacing=1.5)


def main() -> int:
    dashboard = json.loads(DASHBOARD.read_text())
    workdir = Path(tempfile.mkdtemp(prefix="render-dashboard-"))
    prom: PrometheusProcess | None = None
    try:
        with server("dashboard") as srv:
            binary = shutil.which("prometheus") or "/usr/bin/prometheus"
            prom = PrometheusProcess(binary, f"127.0.0.1:{srv.port}", workdir, scrape_interval=SCRAPE)
            prom.wait_target_up()
            prom_url = prom.url
            print(f"server {srv.url}, prometheus {prom_url}; baseline scrapes for 10 s", flush=True)
            start = time.time() - 2
            time.sleep(10)
            print(f"loadtest: gesture-maze loadtest {' '.join(LOADTEST_ARGS)} --url {srv.url}", flush=True)
            traffic_start = time.time()
            report = run_loadtest(srv.url, RESULTS / "render-dashboard-loadtest.json", LOADTEST_ARGS)
            traffic_end = time.time()
            time.sleep(8)  # a few scrapes after the traffic
            end = time.time()
            panels = collect(dashboard, prom_url, start, end)
            rules = httpx.get(f"{prom_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    finally:
        if prom is not None:
            prom.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    firing = [r["name"] for g in rules for r in g["rules"] if r.get("state") not in (None, "inactive")]
    subtitle = (f"Rendered with matplotlib from a real Prometheus (scrape {SCRAPE}) scraping a real "
                f"`gesture-maze serve` under `gesture-maze loadtest {' '.join(LOADTEST_ARGS)}` "
                f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(traffic_start))}).\n"
                f"Not a Grafana screenshot. Shaded: load-test window. $__rate_interval = {RATE_INTERVAL}.")
    draw(panels, (traffic_start - start, traffic_end - start), end - start, OUTPUT, subtitle)

    print(f"\nwrote {OUTPUT.relative_to(REPO)}  (window {end - start:.0f} s, step {STEP:g} s)")
    latency = report.get("frame_latency_ms", {})
    print(f"loadtest: p50 {latency.get('p50')} ms, p99 {latency.get('p99')} ms, "
          f"drop ratio {report.get('drop_ratio')}, errors {report.get('error_count')}")
    print(f"alert rules loaded: {sum(len(g['rules']) for g in rules)}; not inactive: {firing or 'none'}")
    for panel in panels:
        if panel["type"] == "row":
            print(f"[{panel['title']}]")
        else:
            print(f"  {panel['title']:<38} {len(panel['series'])} series")
    return 0


if __name__ == "__main__":
    sys.exit(main())
