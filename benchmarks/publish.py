"""Publish benchmark results to the docs: copy the newest results into docs/performance/results/.

`python -m benchmarks.publish` takes the newest `stages-*.json` and the newest capacity summary
(`capacity-<stamp>.json`, not the per-step files) from benchmarks/results/ and writes them as
`stages.json` and `capacity.json`, and the newest `scaleout-<stamp>.json` of each kind (players,
spectators) as `scaleout-players.json` / `scaleout-spectators.json`; the Performance page renders
them when the site is built. Give files explicitly with `--stages FILE`, `--capacity FILE`,
`--scaleout-players FILE`, `--scaleout-spectators FILE`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import REPO, RESULTS

DOCS_RESULTS = REPO / "docs" / "performance" / "results"
# A benchmark's result file and the key that tells it apart from the other files it writes.
KINDS = {"stages": "configs", "capacity": "summary", "scaleout-players": "players",
         "scaleout-spectators": "spectators", "edge": "edge"}


def newest(kind: str, results: Path = RESULTS) -> Path | None:
    """The most recent `<kind>-*.json` in `results` that is a full result (not a per-step report)."""
    candidates = []
    for path in results.glob(f"{kind.split('-')[0]}-*.json"):  # scaleout-players: scaleout-<stamp>.json
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and KINDS[kind] in data:
            candidates.append(path)
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def publish(sources: dict[str, Path], target: Path = DOCS_RESULTS) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, source in sources.items():
        try:
            data = json.loads(source.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"{source}: not a readable JSON result ({exc})") from None
        if not isinstance(data, dict) or KINDS[kind] not in data:
            raise SystemExit(f"{source} is not a {kind} result (no {KINDS[kind]!r})")
        out = target / f"{kind}.json"
        # Paths of the machine that ran it say nothing about the result: keep them repository-relative.
        out.write_text(source.read_text().replace(str(REPO) + "/", "").replace(str(REPO), "."))
        written.append(out)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for kind in KINDS:
        p.add_argument(f"--{kind}", type=Path, default=None, help=f"{kind} result file (default: newest)")
    args = p.parse_args(argv)
    sources = {}
    for kind in KINDS:
        source = getattr(args, kind.replace("-", "_")) or newest(kind)
        if source is None:
            print(f"publish: no {kind} result in {RESULTS} (run python -m benchmarks.{kind.split('-')[0]})")
            continue
        sources[kind] = source
    for out in publish(sources):
        print(f"published {out.relative_to(REPO)}")
    return 0 if sources else 1


if __name__ == "__main__":
    raise SystemExit(main())
