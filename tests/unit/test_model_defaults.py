"""model/ owns its own defaults (the data directory); stream/settings.py uses the same value."""

from __future__ import annotations

from model.feedback import configured_feedback_url, default_feedback_url
from model.registry import DEFAULT_DATA_DIR, default_data_dir
from stream.settings import Settings


def test_data_dir_default_has_one_owner() -> None:
    assert DEFAULT_DATA_DIR == "~/.local/share/gesture-maze"
    assert Settings.from_env({}).data_dir == DEFAULT_DATA_DIR == default_data_dir({})
    assert default_data_dir(None) == DEFAULT_DATA_DIR


def test_data_dir_reads_the_mapping_passed_in() -> None:
    env = {"GM_DATA_DIR": "/srv/gm"}
    assert default_data_dir(env) == "/srv/gm" == Settings.from_env(env).data_dir


def test_feedback_url_from_the_mapping_passed_in(tmp_path) -> None:
    assert configured_feedback_url({}) is None
    assert configured_feedback_url({"GM_FEEDBACK_URL": ""}) is None
    assert configured_feedback_url({"GM_FEEDBACK_URL": "sqlite:///x.db"}) == "sqlite:///x.db"
    assert default_feedback_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'feedback.db'}"
