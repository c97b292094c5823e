"""The application's state, typed: every long-lived service, built once by the lifespan
(stream.web.app) and kept as the app's one state attribute, `app.state.services` (`services_of`).

Nothing else is mutable app-wide: `models` changes when the poller installs a new champion (or a
first model), `shutting_down` when the drain starts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from model.classifier import ModelHandle
from stream.durability.service import Durability
from stream.edge.admission import FairGate
from stream.edge.limits import ConnectionLimiter, KeyedRateLimiter
from stream.edge.trackers import TrackerBudget
from stream.metrics import Metrics
from stream.recognition.drift import DriftMonitor
from stream.recognition.feedback import FeedbackRecorder
from stream.recognition.pipeline import FramePipeline
from stream.recognition.stills import PredictService
from stream.sessions.donations import DonationBox
from stream.sessions.registry import SessionRegistry
from stream.settings import Settings


@dataclass(eq=False)
class Services:
    settings: Settings
    metrics: Metrics
    registry: SessionRegistry
    durability: Durability
    pipeline: FramePipeline
    feedback: FeedbackRecorder
    drift: DriftMonitor
    predict: PredictService
    trackers: TrackerBudget
    predict_gate: FairGate  # POST /predict admission and fair turns in the pool
    connection_limiter: ConnectionLimiter
    create_limiter: KeyedRateLimiter
    read_limiter: KeyedRateLimiter  # lobby and session reads per address
    started_at: float
    models: ModelHandle | None = None  # None: no model could be loaded (keyboard play only)
    shutting_down: bool = False
    background_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    donations: DonationBox | None = None  # opted-in calibration samples, capped (None: not kept)


def services_of(conn: HTTPConnection) -> Services:
    """The services of the app serving this request or WebSocket."""
    return conn.app.state.services
