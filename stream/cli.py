"""`gesture-maze` command line: serve, train, retrain, loadtest, edge-assets.

Each subcommand's module is imported only when it runs, so `serve` never pays for training imports.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _serve(argv: Sequence[str]) -> int:
    from stream.server.command import main as serve_main

    return serve_main(argv)


def _train(argv: Sequence[str]) -> int:
    from model.train import main as train_main

    return train_main(argv)


def _retrain(argv: Sequence[str]) -> int:
    from model.retrain import main as retrain_main

    return retrain_main(argv)


def _loadtest(argv: Sequence[str]) -> int:
    from stream.loadtest.cli import main as loadtest_main

    return loadtest_main(argv)


def _edge_assets(argv: Sequence[str]) -> int:
    from stream.web.edge_assets import main as edge_assets_main

    return edge_assets_main(argv)


COMMANDS = {
    "serve": (_serve, "run the game server (uvicorn)"),
    "train": (_train, "train, evaluate and register the gesture classifier"),
    "retrain": (_retrain, "retrain the champion's configuration on base data + players' feedback; gated"),
    "loadtest": (_loadtest, "simulate players and spectators against a server"),
    "edge-assets": (_edge_assets, "fetch edge mode's browser runtime (MediaPipe Hands, npm) once"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="gesture-maze", description="Gesture Maze server and tools.")
    parser.add_argument("command", choices=sorted(COMMANDS), help="; ".join(
        f"{name}: {doc}" for name, (_, doc) in sorted(COMMANDS.items())
    ))
    if not argv or argv[0] in {"-h", "--help"}:
        parser.print_help()
        return 0 if argv else 2
    args = parser.parse_args(argv[:1])
    run, _ = COMMANDS[args.command]
    return run(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
