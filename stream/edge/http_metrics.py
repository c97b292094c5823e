"""HTTP request metrics (by route TEMPLATE, never the raw path) and the event-loop lag sampler.

Labelling by template (`/api/sessions/{session_id}`) keeps label cardinality closed: a raw path
would mint one time series per session id, or per random URL a scanner tries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from stream.metrics import Metrics

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

UNMATCHED = "unmatched"
STATIC = "static"


def route_label(scope: Scope) -> str:
    """The matched route's path template; "static" for the frontend mount; "unmatched" otherwise."""
    route = scope.get("route")  # set by Starlette's router on the (shared) scope
    if route is None:
        return UNMATCHED
    path = getattr(route, "path", None)
    if not path or path == "/":
        return STATIC if route.__class__.__name__ == "Mount" else (path or UNMATCHED)
    return path


class HTTPMetricsMiddleware:
    """Counts every HTTP request (route, method, status) and observes its latency."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], Metrics | None]) -> None:
        self.app = app
        self.metrics = metrics  # the app's metrics once its lifespan has made them

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # if the app raises before starting a response, Starlette answers 500
        started = time.perf_counter()

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            metrics = self.metrics()
            if metrics is not None:
                route, method = route_label(scope), _method(scope.get("method", "GET"))
                metrics.http_requests.labels(route=route, method=method, status=str(status)).inc()
                metrics.http_latency.labels(route=route, method=method).observe(time.perf_counter() - started)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method(method: str) -> str:
    return method if method in _METHODS else "OTHER"  # a closed set, whatever clients send


async def sample_event_loop_lag(metrics: Metrics, interval_s: float = 0.25) -> None:
    """Background task: how much later than asked the loop wakes us (blocking code shows up here)."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(interval_s)
        metrics.event_loop_lag.observe(max(0.0, loop.time() - started - interval_s))
