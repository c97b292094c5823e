"""benchmarks.publish: the newest full results reach docs/performance/results/, without machine paths."""

from __future__ import annotations

import json
import os

import pytest

from benchmarks.common import REPO
from benchmarks.publish import newest, publish


def _write(path, data, mtime):
    path.write_text(json.dumps(data))
    os.utime(path, (mtime, mtime))
    return path


def test_newest_full_result_is_published_with_repository_relative_paths(tmp_path) -> None:
    results, target = tmp_path / "results", tmp_path / "docs"
    results.mkdir()
    _write(results / "capacity-1.json", {"summary": {"run": 1}}, 100)
    summary = _write(results / "capacity-2.json", {"summary": {"run": 2},
                                                   "log": f"{REPO}/benchmarks/results/server.log"}, 200)
    _write(results / "capacity-2-ws-4.json", {"frames": {}}, 300)  # a per-step report, newer but not a result
    _write(results / "stages-1.json", {"configs": {}}, 50)
    assert newest("capacity", results) == summary
    assert newest("stages", results) == results / "stages-1.json"
    written = publish({"capacity": summary}, target)
    assert written == [target / "capacity.json"]
    published = json.loads(written[0].read_text())
    assert published["summary"] == {"run": 2}
    assert published["log"] == "benchmarks/results/server.log"


def test_a_file_of_the_wrong_kind_is_refused(tmp_path) -> None:
    wrong = _write(tmp_path / "stages-1.json", {"configs": {}}, 1)
    with pytest.raises(SystemExit, match="not a capacity result"):
        publish({"capacity": wrong}, tmp_path / "docs")
