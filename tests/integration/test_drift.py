"""Drift over real sockets: training-like hands keep it low; the same hands rotated 60 degrees, or
darkened frames, raise it — read back from /metrics as Prometheus would."""

from __future__ import annotations

import asyncio
import re

import cv2
import httpx
import numpy as np
import pytest

from model.features import N_FEATURES
from stream.settings import Settings
from tests.integration.test_gesture_stream import game, stream
from tests.support.frames import jittered_frames, load_rgb
from tests.support.server import LiveServer, live_server

GESTURES = ("palm", "peace", "three", "four", "like")
WINDOW = 60
INTERVAL_S = 0.4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = Settings.from_env({}).replace(
        data_dir=str(tmp_path_factory.mktemp("drift-data")), drift_window=WINDOW, drift_min_frames=30,
        drift_interval_s=INTERVAL_S, max_fps=1000.0,
    )
    with live_server(settings) as running:
        yield running


def rotate(rgb: np.ndarray, degrees: float) -> np.ndarray:
    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(rgb, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


def frames(gestures_dir, transform) -> list[bytes]:
    per = WINDOW // len(GESTURES)
    out: list[bytes] = []
    for i, g in enumerate(GESTURES):
        out += jittered_frames(transform(load_rgb(gestures_dir / f"{g}.jpg")), per, seed=i)
    return out


async def drift_after(server: LiveServer, sequence: list[bytes]) -> dict[str, float]:
    """Stream `sequence` (fills the whole window), wait for two recomputations, read the gauges."""
    async with game(server) as (player, _spectator):
        await stream(player, sequence, lockstep=True)
        await player.wait_for(lambda p: p.replies() >= len(sequence))
    await asyncio.sleep(3 * INTERVAL_S)
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        text = (await http.get("/metrics")).text
    scores = {m[1]: float(m[2]) for m in re.finditer(r'gesture_maze_drift_score\{kind="(\w+)"\} (\S+)', text)}
    psi = [float(v) for v in re.findall(r'gesture_maze_feature_drift_psi\{feature="\w+"\} (\S+)', text)]
    assert len(psi) == N_FEATURES
    hands = re.search(r'gesture_maze_drift_window_frames\{content="hand"\} (\S+)', text)
    scores["hands"] = float(hands[1]) if hands else 0.0
    return scores


async def test_rotated_and_darkened_streams_raise_drift(server, gestures_dir):
    upright = await drift_after(server, frames(gestures_dir, lambda rgb: rgb))
    rotated = await drift_after(server, frames(gestures_dir, lambda rgb: rotate(rgb, 60)))
    dark = await drift_after(server, frames(gestures_dir, lambda rgb: cv2.convertScaleAbs(rgb, alpha=0.3)))
    print(f"\nupright {upright}\nrotated {rotated}\ndark {dark}")
    assert upright["hands"] >= 30 and rotated["hands"] >= 30
    # Feature drift: the same hands, rotated, sit far outside their classes' training ranges.
    assert upright["out_of_range"] < 0.005 < 0.02 < rotated["out_of_range"]  # 0.02: the alert's threshold
    assert rotated["out_of_range"] > 10 * upright["out_of_range"]
    # Rotation moves the orientation features only (distances and bends are the same hand's), so the
    # per-feature maxima show it clearly and the means (over all 307) less so.
    assert rotated["features_psi_max"] > 1.5 * upright["features_psi_max"]
    assert rotated["features_ks_max"] > upright["features_ks_max"] + 0.1
    assert rotated["features_psi_mean"] > upright["features_psi_mean"]
    assert rotated["features_ks_mean"] > upright["features_ks_mean"] + 0.04
    # Input-quality drift: darkened frames, not the hands.
    assert dark["brightness_psi"] > 2.0 > upright["brightness_psi"]  # 2.0: the alert's threshold
    assert dark["brightness_psi"] > 5 * upright["brightness_psi"]
    assert dark["out_of_range"] < 0.02
