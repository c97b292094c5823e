"""The Starlette app factory and its lifespan, the one owner of the server's mutable state.

`create_app(settings)` only wires routes and middleware; everything stateful (metrics, session
registry, frame pipeline, model handle, limiters, background tasks) is created when the lifespan
starts, as one typed `Services` (stream.web.services) on `app.state.services`, and torn down when it
ends, so several apps can live in one process (tests) without sharing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from threadpoolctl import threadpool_limits

from maze import GameConfig
from model.classifier import ModelHandle
from model.feedback import default_feedback_url
from model.registry import default_tracking_uri
from stream.durability.service import Durability
from stream.edge.admission import FairGate
from stream.edge.hosts import HostGuardMiddleware, allowed_host_names
from stream.edge.http_metrics import HTTPMetricsMiddleware, sample_event_loop_lag
from stream.edge.limits import ConnectionLimiter, KeyedRateLimiter
from stream.edge.security import FrameDenyMiddleware, install_log_redaction, security_middleware
from stream.edge.trackers import TrackerBudget
from stream.metrics import Metrics
from stream.protocol.codes import CLOSE_GOING_AWAY, HOST_NOT_ALLOWED, ORIGIN_NOT_ALLOWED, SHUTTING_DOWN
from stream.recognition.drift import DriftMonitor, run_drift
from stream.recognition.feedback import ContributorIds, FeedbackRecorder
from stream.recognition.pipeline import FramePipeline
from stream.recognition.stills import PredictService
from stream.sessions.donations import DonationBox
from stream.sessions.game_feel import FeelConfig
from stream.sessions.registry import SessionRegistry, run_reaper
from stream.sessions.session import SessionContext, SessionOptions
from stream.sessions.slots import SlotPolicy
from stream.settings import Settings
from stream.store import open_store
from stream.web import api, edge_assets, static
from stream.web.errors import exception_handlers
from stream.web.play import play_endpoint
from stream.web.predict import predict_endpoint
from stream.web.services import Services
from stream.web.watch import watch_endpoint

log = logging.getLogger(__name__)

_DRAIN_TIMEOUT_S = 3.0  # how long shutdown waits for queued messages + close frames to go out


def create_app(
    settings: Settings | None = None,
    *,
    frontend_dir: Path | None = None,
) -> Starlette:
    """The app; everything it needs comes from `settings` (the environment by default)."""
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await _start(app, settings)
        try:
            yield
        finally:
            await _stop(app)

    routes: list[BaseRoute] = [
        Route("/health", api.health, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/api/sessions", api.list_sessions, methods=["GET"]),
        Route("/api/sessions", api.create_session, methods=["POST"]),
        Route("/api/sessions/{session_id}", api.get_session, methods=["GET"]),
        Route("/predict", predict_endpoint, methods=["POST"]),
        WebSocketRoute("/ws/play/{session_id}", play_endpoint),
        WebSocketRoute("/ws/watch/{session_id}", watch_endpoint),
        Mount(edge_assets.URL_PATH, app=edge_assets.InstalledFiles(Path(settings.edge_assets_dir))),
    ]
    # Last: the catch-all static mount must never shadow an API or WebSocket route. The client ships
    # inside the package (stream.web.static); a missing one fails here, loudly, not as a silent 404.
    client_dir = frontend_dir if frontend_dir is not None else static.frontend_dir()
    routes.append(Mount("/", app=StaticFiles(directory=client_dir, html=True), name="frontend"))

    app_ref: dict[str, Starlette] = {}

    def current_metrics() -> Metrics | None:
        services = _services(app_ref["app"]) if "app" in app_ref else None
        return services.metrics if services is not None else None

    def count_refusal(code: str) -> Callable[[str], None]:
        def on_reject(kind: str) -> None:
            metrics = current_metrics()
            if metrics is not None:
                metrics.errors.labels(code=code).inc()

        return on_reject

    host_names = allowed_host_names(settings.host, settings.allowed_hosts)
    middleware = [
        # Outermost: counts the refusals of the guards below too.
        Middleware(HTTPMetricsMiddleware, metrics=current_metrics),
        # Every response, refusals included: no page may be framed by another site (clickjacking).
        Middleware(FrameDenyMiddleware),
        # Host before Origin: the same-origin check compares Origin with Host, so Host must be ours.
        Middleware(HostGuardMiddleware, names=host_names, on_reject=count_refusal(HOST_NOT_ALLOWED)),
        *security_middleware(settings.allowed_origins, on_reject=count_refusal(ORIGIN_NOT_ALLOWED)),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers=exception_handlers(),  # type: ignore[arg-type]
    )
    app_ref["app"] = app
    return app


async def _start(app: Starlette, settings: Settings) -> Services:
    install_log_redaction()  # uvicorn logs request paths, and the play URL carries the token
    # Parallelism comes from the frame pool; BLAS threads inside each worker only oversubscribe the
    # cores (a one-row prediction measured several times slower with multi-threaded OpenBLAS).
    threadpool_limits(1)
    metrics = Metrics()

    def config_for(options: SessionOptions) -> GameConfig:
        return GameConfig(
            width=options.width,
            height=options.height,
            growth=settings.level_growth,
            max_size=settings.maze_max_size,
        )

    context = SessionContext(
        metrics=metrics,
        win_pause_s=settings.win_pause_s,
        feel=FeelConfig.from_settings(settings),
        donations_dir=Path(settings.data_dir) / "donations",  # opted-in calibration landmarks
        feedback_frames=settings.feedback_frames,
        presence_interval_s=settings.presence_interval_ms / 1000.0,
    )
    registry = SessionRegistry(
        max_sessions=settings.max_sessions,
        config_for=config_for,
        context=context,
        slots=SlotPolicy(settings.max_sessions_per_ip, settings.unjoined_session_ttl_s),
    )
    durability = Durability(
        open_store(settings.store_url, data_dir=settings.data_dir, lease_s=settings.store_lease_s),
        registry,
        metrics,
        grace_s=settings.session_grace_s,
        lease_s=settings.store_lease_s,
        lobby_ttl_s=settings.lobby_cache_s,
        lobby_max=settings.lobby_max,
    )
    await durability.start()
    tracking_uri = settings.mlflow_tracking_uri or default_tracking_uri(settings.data_dir)
    contributors = ContributorIds.from_secret_or_file(settings.contributor_secret, settings.data_dir)
    services = Services(
        settings=settings,
        metrics=metrics,
        registry=registry,
        durability=durability,
        # Each session has at most one hand waiting for the classifier: max_sessions bounds its queue.
        pipeline=FramePipeline(settings.worker_count, metrics, classify_batch=settings.classify_batch,
                               classify_capacity=settings.max_sessions,
                               classify_linger_s=settings.classify_linger_ms / 1000.0),
        # Feedback loop and drift (stream.recognition): the feedback store opens on the first write.
        feedback=FeedbackRecorder(
            settings.feedback_url or default_feedback_url(settings.data_dir),
            settings.feedback_max_events,
            metrics,
            contributors=contributors,
            game_rate=KeyedRateLimiter(settings.feedback_game_per_min, 60.0),
            address_rate=KeyedRateLimiter(settings.feedback_address_per_hour, 3600.0),
            max_per_game=settings.feedback_game_max,
            max_per_contributor=settings.feedback_address_max,
        ),
        donations=DonationBox(
            context.donations_dir or Path(settings.data_dir) / "donations",
            max_per_gesture=settings.donation_max_per_gesture,
            max_samples=settings.donation_max_samples,
            per_address_per_day=settings.donations_address_per_day,
            max_bytes=settings.donations_max_bytes,
            metrics=metrics,
        ),
        drift=DriftMonitor(metrics, settings.drift_window, settings.drift_min_frames, tracking_uri),
        predict=(predict := PredictService(settings)),
        predict_gate=FairGate(  # one turn per thread of the uploads' own pool: its queue stays empty
            slots=predict.slots,
            per_key=settings.predict_per_ip,
            capacity=settings.predict_queue,
            wait_s=settings.predict_wait_s,
        ),
        trackers=TrackerBudget(settings.max_trackers, settings.max_trackers_per_ip, metrics),
        connection_limiter=ConnectionLimiter(settings.max_connections_per_ip),
        create_limiter=KeyedRateLimiter(settings.session_create_per_min, 60.0),
        read_limiter=KeyedRateLimiter(settings.api_reads_per_10s, 10.0),
        started_at=time.monotonic(),
        models=await _load_models(settings, metrics),
    )
    app.state.services = services
    # Everything loaded so far (the model, the libraries) lives as long as the process: out of the
    # collector's sight, so a full collection walks only what play creates (no 100 ms pauses).
    gc.collect()
    gc.freeze()

    def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
        services.background_tasks.append(asyncio.get_running_loop().create_task(coro, name=name))

    reap = run_reaper(registry, settings.session_grace_s, settings.reaper_interval_s, settings.tracker_idle_s)
    spawn(reap, "reaper")
    spawn(sample_event_loop_lag(metrics), "loop-lag")
    if settings.drift_interval_s > 0:
        spawn(run_drift(services.drift, lambda: services.models, settings.drift_interval_s), "drift")
    if settings.model_poll_s > 0:
        spawn(_poll_models(services), "model-poll")
    return services


def _services(app: Starlette) -> Services | None:
    return getattr(app.state, "services", None)  # None before the lifespan started (or if it failed)


async def drain(app: Starlette) -> None:
    """Graceful stop (idempotent): refuse new sockets, finish in-flight frames, then tell every player
    and spectator (`error` `shutting_down`) and close its socket with 1001, so it reconnects elsewhere.

    Called by stream.server.runner before uvicorn's own shutdown (which would close sockets with
    1012), and again from the lifespan's end as a fallback.
    """
    services = _services(app)
    if services is None or services.shutting_down:
        return
    services.shutting_down = True  # from here /health answers 503 and new sockets are refused
    registry, durability = services.registry, services.durability
    connections = [conn for session in registry for conn in session.audience.connections()]
    connections += durability.relayed_connections()  # spectators of games run elsewhere
    await services.pipeline.shutdown()  # in-flight frames finish and their replies are queued
    for conn in connections:  # why the 1001 follows: every state sent so far is stored, resume elsewhere
        conn.send_error(SHUTTING_DOWN, "the server is shutting down; reconnect to continue")
    await registry.close_all(CLOSE_GOING_AWAY, "server shutting down")
    durability.close_relays()
    if connections:
        await asyncio.wait(
            [asyncio.ensure_future(conn.wait_closed()) for conn in connections], timeout=_DRAIN_TIMEOUT_S
        )


async def _stop(app: Starlette) -> None:
    await drain(app)
    services = _services(app)
    if services is None:
        return
    for task in services.background_tasks:
        task.cancel()
    await asyncio.gather(*services.background_tasks, return_exceptions=True)
    await services.durability.close()  # after the sessions closed: their last writes finish first
    await run_in_threadpool(services.predict.close)
    await services.feedback.close()


def _record_model(metrics: Metrics, models: ModelHandle) -> None:
    info = models.current.info
    metrics.model_info.info(
        {
            "name": str(info.name),
            "version": str(info.version),
            "alias": str(info.alias or ""),
            "source": str(info.source),
            "feature_version": str(info.feature_version),
        }
    )


async def _load_models(settings: Settings, metrics: Metrics) -> ModelHandle | None:
    """The model handle, or None: without a model the server still serves keyboard play (degraded,
    see /health) and frames get `model_unavailable`, instead of the whole game refusing to start."""
    try:
        # Training writes to the same default store, so `models:/...` resolves without extra config.
        tracking_uri = settings.mlflow_tracking_uri or default_tracking_uri(settings.data_dir)
        models = await run_in_threadpool(  # loads the model: blocking
            partial(ModelHandle, settings.model_uri, tracking_uri=tracking_uri)
        )
    except Exception as exc:
        metrics.model_reloads.labels(result="error").inc()
        log.error("no gesture model could be loaded (%s); gestures are off until one loads", exc)
        return None
    _record_model(metrics, models)
    return models


async def _poll_models(services: Services) -> None:
    """Background task: pick up a new registry champion (or a first model) without a restart."""
    settings, metrics = services.settings, services.metrics
    while True:
        await asyncio.sleep(settings.model_poll_s)
        models = services.models
        if models is None:
            services.models = await _load_models(settings, metrics)
            continue
        try:
            changed = await run_in_threadpool(models.refresh)
        except Exception:
            metrics.model_reloads.labels(result="error").inc()
            log.warning("model refresh failed; still serving the current model", exc_info=True)
            continue
        if changed:
            metrics.model_reloads.labels(result="reloaded").inc()
            _record_model(metrics, models)
            log.info("now serving model %s", models.current.info.version)
        else:
            metrics.model_reloads.labels(result="unchanged").inc()
