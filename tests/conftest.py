from __future__ import annotations

from collections.abc import Iterator

import pytest

from stream.settings import Settings
from tests.support.clean_tree import pytest_sessionfinish, pytest_sessionstart  # noqa: F401  (hooks)
from tests.support.paths import GESTURES_DIR, IMAGES_DIR, LANDMARKS_CSV, require_path
from tests.support.server import LiveServer, live_server


@pytest.fixture
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Defaults, untouched by the developer's environment; local state (the session store) in a
    fresh temporary directory, never the checkout."""
    return Settings.from_env({}).replace(data_dir=str(tmp_path_factory.mktemp("gm-data")))


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    with live_server(settings) as running:
        yield running


@pytest.fixture(scope="session")
def gestures_dir():
    return require_path(GESTURES_DIR)


@pytest.fixture(scope="session")
def images_dir():
    return require_path(IMAGES_DIR)


@pytest.fixture(scope="session")
def landmarks_csv():
    return require_path(LANDMARKS_CSV)
