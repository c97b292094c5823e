"""MkDocs hooks: what the code defines is documented from the code, at build time.

A page asks for a generated block with an HTML comment on a line of its own:

    <!-- generated: settings -->           every setting of `stream.settings.Settings`, by block
    <!-- generated: metrics -->            every metric of `stream.metrics.Metrics`, by block
    <!-- generated: loadtest-options -->   the options of `gesture-maze loadtest`
    <!-- generated: decisions -->          every decision record in docs/decisions/
    <!-- generated: contracts -->          the module contracts section of DEVELOPERS.md
    <!-- generated: results stages -->     a table from docs/performance/results/stages.json
    <!-- generated: results capacity -->   a table from docs/performance/results/capacity.json
    <!-- generated: results scaleout-players -->, `scaleout-spectators`: benchmarks.scaleout results
    <!-- generated: results edge -->         benchmarks.edge: JPEG vs edge mode

So a setting, metric, option, decision record or benchmark result added anywhere appears in the site
without an edit here. Decision records and pages missing from `nav` are added to it as well. The
render functions are plain functions of their inputs (tests/unit/test_docs.py uses them too).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[1]
REPO = DOCS.parent
RESULTS_DIR = DOCS / "performance" / "results"
_MARKER = re.compile(r"^<!-- generated: ([\w-]+)(?: ([\w-]+))? -->$", re.MULTILINE)
_BLOCK = re.compile(r"^\s*# -+ (.+?) -+\s*$")
# A warning through MkDocs' logger fails the strict build, with a message instead of a traceback.
log = logging.getLogger("mkdocs.hooks.generate")


# --- helpers ------------------------------------------------------------------------------------------
def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _blocks(source: str, assignment: re.Pattern[str]) -> dict[str, str]:
    """name -> title of the `# --- title ---` comment block it is defined under in `source`."""
    found: dict[str, str] = {}
    block = "Other"
    for line in source.splitlines():
        header = _BLOCK.match(line)
        if header:  # "Feedback loop (docs/x.md)" -> "Feedback loop": references are for coders
            block = re.sub(r"\s*\([^)]*\)\s*$", "", header.group(1)).strip() or header.group(1).strip()
            continue
        match = assignment.match(line)
        if match:
            found[match.group(1)] = block
    return found


def _grouped(rows: list[tuple[str, list[Any]]], header: list[str]) -> str:
    """One table per block, in the order blocks first appear."""
    order: list[str] = []
    by_block: dict[str, list[list[Any]]] = {}
    for block, row in rows:
        if block not in by_block:
            order.append(block)
            by_block[block] = []
        by_block[block].append(row)
    parts = []
    for block in order:
        parts += [f"## {block[:1].upper()}{block[1:]}", "", _table(header, by_block[block]), ""]
    return "\n".join(parts)


# --- settings -----------------------------------------------------------------------------------------
def _default(value: Any) -> str:
    if isinstance(value, tuple):
        value = ",".join("=".join(p) if isinstance(p, tuple) else str(p) for p in value)
        if not value:
            return "(empty)"
    if value is None:
        return "(unset)"
    return f"`{value}`"


def settings_markdown() -> str:
    import stream.settings as module

    blocks = _blocks(inspect.getsource(module), re.compile(r"^\s+(\w+)\s*:[^=]+=\s*_env\("))
    rows = []
    for f in dataclasses.fields(module.Settings):
        if "env" not in f.metadata:
            continue
        env, doc = f.metadata["env"], f.metadata.get("doc", "")
        rows.append((blocks.get(f.name, "Other"), [f"`{env}`", _default(f.default), doc]))
    return _grouped(rows, ["Variable", "Default", "Meaning"])


# --- metrics ------------------------------------------------------------------------------------------
_SERIES = {"counter": "{}_total", "histogram": "{}_bucket, _sum, _count", "info": "{}_info",
           "summary": "{}_sum, _count", "gauge": "{}", "stateset": "{}", "enum": "{}"}


def metrics_markdown() -> str:
    from prometheus_client.metrics import MetricWrapperBase

    import stream.metrics as module

    metrics = module.Metrics(process=False)
    blocks = _blocks(inspect.getsource(module), re.compile(r"^\s+self\.(\w+)\s*=\s*\w+\("))
    wrappers = {w._name: (attr, w) for attr, w in vars(metrics).items() if isinstance(w, MetricWrapperBase)}
    rows = []
    for family in metrics.registry.collect():
        attr, wrapper = wrappers.get(family.name, (None, None))
        labels = ", ".join(f"`{n}`" for n in getattr(wrapper, "_labelnames", ())) or "—"
        series = _SERIES.get(family.type, "{}").format(family.name)
        block = blocks.get(attr, "Other") if attr else "Other"
        rows.append((block, [f"`{series}`", family.type, labels, family.documentation]))
    return _grouped(rows, ["Metric", "Type", "Labels", "Meaning"])


# --- command-line options -----------------------------------------------------------------------------
def options_markdown(parser: argparse.ArgumentParser) -> str:
    rows = []
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        names = ", ".join(f"`{o}`" for o in action.option_strings)
        if action.metavar or action.nargs != 0:
            names += f" `{action.metavar or action.dest.upper()}`" if not action.choices else (
                " " + " or ".join(f"`{c}`" for c in action.choices))
        default = "" if action.default is None or action.default is False else f"`{action.default}`"
        help_text = re.sub(r"\(default [^;)]*; ", "(", action.help or "")  # the Default column says it
        help_text = re.sub(r"\s*\(default [^)]*\)|; default [^)]*(?=\))", "", help_text)
        help_text = help_text.replace("<", "&lt;").replace(">", "&gt;")
        rows.append([names, default, help_text])
    return _table(["Option", "Default", "Meaning"], rows)


def loadtest_options_markdown() -> str:
    from stream.loadtest.cli import build_parser

    return options_markdown(build_parser())


# --- decision records ---------------------------------------------------------------------------------
def _record_key(path: Path) -> tuple[int, str]:
    number = re.match(r"(\d+)-", path.name)
    return (int(number.group(1)) if number else 10**6, path.name)


def decision_records(docs: Path = DOCS) -> list[Path]:
    folder = docs / "decisions"
    return sorted((p for p in folder.glob("*.md") if p.name != "index.md"), key=_record_key)


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def decisions_markdown(docs: Path = DOCS) -> str:
    """A table of the records in number order (`0007-slug.md` is number 7, titled `# 7. Title`)."""
    rows = []
    for path in decision_records(docs):
        number = re.match(r"(\d+)-", path.name)
        title = re.sub(r"^\d+\.\s+", "", _title(path))  # the number has its own column
        rows.append([str(int(number.group(1))) if number else "—", f"[{title}]({path.name})"])
    return _table(["No.", "Decision"], rows) if rows else "No decision records yet."


# --- module contracts ---------------------------------------------------------------------------------
def contracts_markdown(developers: Path = REPO / "DEVELOPERS.md") -> str:
    """The `## Module contracts` section of DEVELOPERS.md (the one place they are edited)."""
    text = developers.read_text(encoding="utf-8")
    match = re.search(r"^## Module contracts.*?$(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    if not match:
        raise ValueError(f"{developers} has no '## Module contracts' section")
    return "## Module contracts\n" + match.group(1).rstrip() + "\n"


# --- benchmark results --------------------------------------------------------------------------------
def _n(value: Any, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def stages_markdown(data: dict[str, Any]) -> str:
    rows = []
    for name, c in data["configs"].items():
        s = c["stages_ms"]
        par = c.get("parallel", {})
        rows.append([
            name, _n(s["decode"]["mean"], 2), _n(s["landmarks"]["mean"], 2), _n(s["classify"]["mean"], 2),
            f"{_n(s['total']['mean'], 2)} ({_n(s['total']['p95'], 2)})", _n(c["cpu_ms_per_frame"], 1),
            f"{_n(par.get('frames_per_s'))} on {_n(par.get('cores_used'), 2)} cores",
            _n(c.get("limit_players_at_15fps")),
        ])
    table = _table(["Configuration", "decode ms", "landmarks ms", "classify ms", "total ms (p95)",
                    "CPU ms / frame", "frames/s, all threads", "players at 15 fps (machine limit)"], rows)
    machine = f"{data.get('cores', '?')} cores, 1-minute load average {data.get('loadavg_1m', '?')} at start"
    if data.get("images"):
        photos = "/".join(Path(data["images"]).parts[-3:])
        machine += f"; {data.get('frames', '?')} frames built from the photos in `…/{photos}`"
    return f"{table}\n\nMachine: {machine}."


def _capacity_command(args: dict[str, Any]) -> str:
    parts = [".venv/bin/python -m benchmarks.capacity", f"--modes {args['modes']}"]
    for key in ("duration", "start", "step", "max", "patience", "spectators"):
        if args.get(key):
            parts.append(f"--{key} {args[key]:g}" if isinstance(args[key], float) else f"--{key} {args[key]}")
    parts += [f"--env {e}" for e in args.get("env", [])]
    return " ".join(parts)


_MODES = {"ws": "this server (ws)", "predict": "seed baseline (predict)"}


def capacity_markdown(data: dict[str, Any]) -> str:
    rows = []
    for mode, result in data["results"].items():
        label = _MODES.get(mode, mode)
        for s in result["steps"]:
            m = s.get("machine", {})
            rows.append([
                label, s["players"], _n(s["p50_ms"]), _n(s["p99_ms"]),
                _n(100 * s["delivered_ratio"], 1, " %"),
                _n(s["throughput_fps"]), _n(s["server_cores"], 2), _n(s["frames_per_cpu_second"]),
                _n(s["rss_peak_mb"], 0, " MB"), _n(m.get("other_cores"), 2), "**yes**" if s["ok"] else "no",
            ])
    table = _table(["Mode", "players", "p50 ms", "p99 ms", "delivered", "frames/s", "server cores",
                    "frames / CPU-s", "peak RSS", "other cores", "within bounds"], rows)
    s = data.get("summary", {})
    summary = _table(["Measure", "this server", "seed baseline", "ratio"], [
        ["largest N within bounds", _n(s.get("ws_max_players")), _n(s.get("predict_max_players")),
         _n(s.get("ratio_players"), 2, "x")],
        ["frames/s within bounds", _n(s.get("ws_fps_within_bounds")), _n(s.get("predict_fps_within_bounds")),
         _n(s.get("ratio_fps_within_bounds"), 2, "x")],
        ["frames per server CPU-second (best step)", _n(s.get("ws_frames_per_cpu_second")),
         _n(s.get("predict_frames_per_cpu_second")), _n(s.get("ratio_frames_per_core"), 2, "x")],
    ])
    command = _capacity_command(data.get("args", {"modes": "predict,ws"}))
    return f"```\n{command}\n```\n\n{table}\n\n{summary}"


def scaleout_markdown(data: dict[str, Any]) -> str:
    """benchmarks.scaleout: players (one process vs one per core on Redis) and/or spectator fan-out."""
    parts = []
    if "players" in data:
        players = data["players"]
        rows = [
            [mode, s["players"], _n(s["p50_ms"]), _n(s["p99_ms"]), _n(100 * s["delivered_ratio"], 1, " %"),
             _n(s["throughput_fps"]), "**yes**" if s["ok"] else "no"]
            for mode in ("single", "workers") for s in players.get(mode, {}).get("steps", [])
        ]
        header = ["Mode", "players", "p50 ms", "p99 ms", "delivered", "frames/s", "within bounds"]
        parts.append(_table(header, rows))
        s = players.get("summary", {})
        parts.append(_table(["Measure", "one process", "one per core + Redis", "ratio"], [
            ["largest N within bounds", _n(s.get("single_max_players")), _n(s.get("workers_max_players")),
             _n(s.get("ratio_players"), 2, "x")],
        ]))
    if "spectators" in data:
        rows = [
            [r["instances"], r["spectators"], r["moves"], _n(100 * r["delivered_ratio"], 1, " %"),
             _n(r["p50_ms"]), _n(r["p99_ms"]), _n(r["max_ms"])]
            for r in data["spectators"].values()
        ]
        header = ["instances", "spectators", "moves", "delivered", "p50 ms", "p99 ms", "max ms"]
        parts.append(_table(header, rows))
    return "\n\n".join(parts)


_EDGE_MODES = {"ws": "JPEG frames (ws)", "edge": "landmarks (edge)",
               "edge_workers_2": "landmarks (edge), `serve --workers 2` + Redis"}
_EDGE_ARGS = ("ws_start", "ws_step", "ws_max", "edge_start", "edge_step", "edge_max", "edge_workers",
              "duration")


def _edge_ratio(e: dict[str, Any]) -> str:
    best, ws = e.get("edge_workers_max_players"), e.get("ws_max_players")
    return _n(best / ws, 2, "x") if best and ws else ""


def edge_markdown(data: dict[str, Any]) -> str:
    """benchmarks.edge: the capacity search in JPEG and edge mode, bytes per player, browser time."""
    rows = [
        [_EDGE_MODES.get(mode, mode), s["players"], _n(s["p50_ms"]), _n(s["p99_ms"]),
         _n(100 * s["delivered_ratio"], 1, " %"), _n(s["throughput_fps"]), _n(s["server_cores"], 2),
         "**yes**" if s["ok"] else "no"]
        for mode, result in data["results"].items() for s in result["steps"]
    ]
    header = ["Mode", "players", "p50 ms", "p99 ms", "delivered", "frames/s", "server cores", "within bounds"]
    e = data["edge"]
    browser = e.get("browser") or {}
    summary = _table(["Measure", "JPEG (ws)", "edge", "ratio"], [
        ["largest N within bounds", _n(e.get("ws_max_players")), _n(e.get("edge_max_players")),
         _n(e.get("ratio_players"), 2, "x")],
        *([[f"largest N within bounds, `--workers {e['edge_workers']}`", "",
            _n(e.get("edge_workers_max_players")), _edge_ratio(e)]] if e.get("edge_workers") else []),
        ["bytes a player sends per second", _n(e.get("ws_bytes_per_player_s"), 0),
         _n(e.get("edge_bytes_per_player_s"), 0), ""],
        ["the browser's own landmark time, p50 / p95 ms", "—",
         f"{_n(browser.get('p50_ms'))} / {_n(browser.get('p95_ms'))}", browser.get("renderer", "")],
    ])
    args = data.get("args", {})
    command = ".venv/bin/python -m benchmarks.edge " + " ".join(
        f"--{key.replace('_', '-')} {args[key]:g}" for key in _EDGE_ARGS if key in args
    )
    return f"```\n{command}\n```\n\n{_table(header, rows)}\n\n{summary}"


_RESULTS = {
    "stages": stages_markdown,
    "capacity": capacity_markdown,
    "scaleout-players": scaleout_markdown,
    "scaleout-spectators": scaleout_markdown,
    "edge": edge_markdown,
}


def results_markdown(name: str, results_dir: Path = RESULTS_DIR) -> str:
    path = results_dir / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `python -m benchmarks.publish`")
    return _RESULTS[name](json.loads(path.read_text(encoding="utf-8")))


# --- the page transformation --------------------------------------------------------------------------
def expand(markdown: str, docs: Path = DOCS) -> str:
    def block(match: re.Match[str]) -> str:
        kind, arg = match.group(1), match.group(2)
        if kind == "settings":
            return settings_markdown()
        if kind == "metrics":
            return metrics_markdown()
        if kind == "loadtest-options":
            return loadtest_options_markdown()
        if kind == "decisions":
            return decisions_markdown(docs)
        if kind == "contracts":
            return contracts_markdown(docs.parent / "DEVELOPERS.md")
        if kind == "results" and arg in _RESULTS:
            return results_markdown(arg, docs / "performance" / "results")
        raise ValueError(f"unknown generated block {match.group(0)!r}")

    return _MARKER.sub(block, markdown)


def _nav_files(nav: Any) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, dict):
        return set().union(*(_nav_files(v) for v in nav.values())) if nav else set()
    if isinstance(nav, list):
        return set().union(*(_nav_files(v) for v in nav)) if nav else set()
    return set()


def complete_nav(nav: list[Any], docs: Path = DOCS) -> list[Any]:
    """Decision records under "Decision records", other pages missing from nav under "More"."""
    listed = _nav_files(nav)
    records = [f"decisions/{p.name}" for p in decision_records(docs)]

    def add_records(items: list[Any]) -> None:
        for item in items:
            if isinstance(item, dict):
                for value in item.values():
                    if isinstance(value, list):
                        if "decisions/index.md" in value:
                            value.extend(r for r in records if r not in value)
                        else:
                            add_records(value)

    add_records(nav)
    listed = _nav_files(nav)
    extra = sorted(
        p.relative_to(docs).as_posix() for p in docs.rglob("*.md")
        if not any(part.startswith(("_", ".")) for part in p.relative_to(docs).parts)
    )
    missing = [p for p in extra if p not in listed]
    if missing:
        nav.append({"More": missing})
    return nav


def on_config(config: Any) -> Any:
    if config.get("nav"):
        config["nav"] = complete_nav(config["nav"], Path(config["docs_dir"]))
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    try:
        return expand(markdown, Path(config["docs_dir"]))
    except (OSError, ValueError, KeyError) as exc:
        log.warning("%s: generated block failed: %s", page.file.src_uri, exc)
        return markdown
