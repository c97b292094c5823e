"""CI smoke run of `gesture-maze loadtest` against the real app: correctness only, no timing assertions.

Two players stream real JPEG frames (built from the shared photos) through real MediaPipe for a few
seconds, each watched by one spectator; the tool's own `--check` must pass and the report must show
that every player got replies and every spectator got states.
"""

from __future__ import annotations

import json

from stream.loadtest.cli import main
from tests.support.server import live_server


def test_loadtest_smoke(settings, images_dir, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    with live_server(settings) as server:
        code = main([
            "--url", server.http_url, "--players", "2", "--spectators", "1", "--fps", "10", "--duration", "5",
            "--ramp-up", "0.5", "--warmup", "0.5", "--images", str(images_dir), "--json", str(report_path),
            "--no-progress", "--check",
        ])
    out = capsys.readouterr()
    assert code == 0, out.err
    report = json.loads(report_path.read_text())
    assert "frame -> reply" in out.out  # the human table was printed

    assert report["players"] == 2 and report["spectators"] == 2
    assert report["error_count"] == 0, report["errors"]
    assert report["players_without_replies"] == 0
    assert report["spectators_without_states"] == 0
    frames = report["frames"]
    assert frames["sent"] > 0 and frames["processed"] > 0
    assert frames["processed"] + frames["dropped"] + frames["outstanding_at_end"] == frames["sent"]
    assert frames["hands"] > 0  # MediaPipe found the hand in the photo-built frames
    assert frames["recognised"] > 0  # and the classifier named the gesture shown
    assert report["moves"]["seen"] > 0  # held gestures moved the players
    assert report["spectator_states"] >= 2
    for key in ("p50", "p95", "p99", "max"):
        assert report["frame_latency_ms"][key] is not None
    assert report["server"]["cpu_seconds"] is not None  # /metrics was scraped
