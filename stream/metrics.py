"""Every Prometheus metric the server exports, owned by one `Metrics` object per app.

A registry per app (not prometheus-client's global one) keeps tests that start several apps in one
process independent, and keeps the app's lifespan the only owner of mutable state. Label values are
always from small closed sets: never a session id, a token or a client address.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

PREFIX = "gesture_maze"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Buckets sized for a real-time path measured in milliseconds.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0)
_CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
_BYTES_BUCKETS = (1_000, 5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 640_000)
_PIXEL_BUCKETS = (64, 128, 240, 320, 480, 640, 720, 960, 1080, 1280, 1920)
_BRIGHTNESS_BUCKETS = (16, 32, 48, 64, 96, 128, 160, 192, 224, 255)
_SHARPNESS_BUCKETS = (5, 10, 25, 50, 100, 200, 400, 800, 1600)
_CONTRAST_BUCKETS = (4, 8, 16, 24, 32, 48, 64, 96, 128)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """The app's metrics; attributes are the prometheus-client objects, named as exported."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        if process:
            ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
            PlatformCollector(registry=r)

        # --- model ---------------------------------------------------------------------------
        self.prediction_confidence = Histogram(
            f"{PREFIX}_prediction_confidence", "Classifier confidence of each prediction.",
            buckets=_CONFIDENCE_BUCKETS, registry=r,
        )
        self.gestures = Counter(
            f"{PREFIX}_gestures", "Predicted gestures by class (no_gesture: a hand showing none of them).",
            ["gesture"], registry=r
        )
        self.frames_hand = Counter(
            f"{PREFIX}_frames_hand", "Processed frames by whether a hand was found.", ["detected"], registry=r
        )
        self.stage_seconds = Histogram(
            f"{PREFIX}_stage_seconds", "Server time per frame by stage (decode, landmarks, classify, total).",
            ["stage"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.classify_batch = Histogram(
            f"{PREFIX}_classify_batch_size", "Hands classified in one pass over the model (all players).",
            buckets=_BATCH_BUCKETS, registry=r,
        )
        self.model_info = Info(f"{PREFIX}_model", "The gesture model being served.", registry=r)
        self.model_reloads = Counter(
            f"{PREFIX}_model_reloads", "Model reload attempts by result.", ["result"], registry=r
        )

        # --- data ----------------------------------------------------------------------------
        self.frame_bytes = Histogram(
            f"{PREFIX}_frame_bytes", "Size of received binary frames.", buckets=_BYTES_BUCKETS, registry=r
        )
        self.frame_width = Histogram(
            f"{PREFIX}_frame_width_pixels", "Decoded frame width.", buckets=_PIXEL_BUCKETS, registry=r
        )
        self.frame_height = Histogram(
            f"{PREFIX}_frame_height_pixels", "Decoded frame height.", buckets=_PIXEL_BUCKETS, registry=r
        )
        self.frame_brightness = Histogram(
            f"{PREFIX}_frame_brightness", "Mean luma (0-255) of decoded frames.",
            buckets=_BRIGHTNESS_BUCKETS, registry=r,
        )
        self.frame_contrast = Histogram(
            f"{PREFIX}_frame_contrast", "Luma standard deviation of decoded frames.",
            buckets=_CONTRAST_BUCKETS, registry=r,
        )
        self.frame_sharpness = Histogram(
            f"{PREFIX}_frame_sharpness", "Variance of the Laplacian of decoded frames (low = blurred).",
            buckets=_SHARPNESS_BUCKETS, registry=r,
        )
        self.frames_invalid = Counter(
            f"{PREFIX}_frames_invalid",
            "Frames rejected before recognition, by reason.",
            ["reason"],
            registry=r,
        )

        # --- server --------------------------------------------------------------------------
        self.connections = Gauge(
            f"{PREFIX}_ws_connections", "Open WebSocket connections by role.", ["role"], registry=r
        )
        self.sessions = Gauge(f"{PREFIX}_sessions", "Live game sessions.", registry=r)
        self.trackers = Gauge(
            f"{PREFIX}_trackers",
            "Hand trackers (MediaPipe graphs, ~60 MiB each) held for streaming players.", registry=r,
        )
        self.frames_received = Counter(f"{PREFIX}_frames_received", "Binary frames received.", registry=r)
        self.landmarks_received = Counter(
            f"{PREFIX}_landmarks_received", "Valid `landmarks` messages received (edge mode).", registry=r
        )
        self.frames_processed = Counter(
            f"{PREFIX}_frames_processed", "Frames that went through recognition.", registry=r
        )
        self.frames_dropped = Counter(
            f"{PREFIX}_frames_dropped",
            "Frames dropped unprocessed, by reason (superseded, rate_limited, no_tracker).",
            ["reason"], registry=r,
        )
        self.moves = Counter(
            f"{PREFIX}_moves", "Moves by direction, source (gesture, keyboard) and result (ok, wall).",
            ["direction", "source", "result"], registry=r,
        )
        self.games_won = Counter(f"{PREFIX}_games_won", "Levels won.", registry=r)
        self.errors = Counter(
            f"{PREFIX}_errors", "Error messages sent to clients, by code.", ["code"], registry=r
        )
        self.messages_dropped = Counter(
            f"{PREFIX}_messages_dropped", "Outgoing messages dropped by a full send queue, by role.",
            ["role"], registry=r,
        )
        self.pool_in_flight = Gauge(
            f"{PREFIX}_pool_in_flight", "Frames being processed by the thread pool.", registry=r
        )
        self.pool_backlog = Gauge(
            f"{PREFIX}_pool_backlog", "Frames waiting for a pool thread.", registry=r
        )
        self.event_loop_lag = Histogram(
            f"{PREFIX}_event_loop_lag_seconds", "How late the event loop runs a periodic probe.",
            buckets=_LAG_BUCKETS, registry=r,
        )
        self.http_requests = Counter(
            f"{PREFIX}_http_requests", "HTTP requests by route template, method and status.",
            ["route", "method", "status"], registry=r,
        )
        self.http_latency = Histogram(
            f"{PREFIX}_http_request_duration_seconds", "HTTP request latency by route template.",
            ["route", "method"], buckets=_LATENCY_BUCKETS, registry=r,
        )

        # --- live quality, feedback and drift (docs/mlops-loop.md) --------------------
        self.gesture_moves = Counter(
            f"{PREFIX}_gesture_moves", "Moves fired by a gesture, by the gesture that fired them.",
            ["gesture"], registry=r,
        )
        self.undos = Counter(
            f"{PREFIX}_undos", "Gesture moves the player undid (that was wrong), by the predicted gesture.",
            ["gesture"], registry=r,
        )
        self.feedback = Counter(
            f"{PREFIX}_feedback",
            "Corrections by outcome: stored, no_consent, dropped (writer busy), error, refused_game_rate, "
            "refused_address_rate (per-game / per-address rate caps), refused_game_total (per-game cap).",
            ["result"], registry=r,
        )
        self.feedback_evicted = Counter(
            f"{PREFIX}_feedback_evicted",
            "Feedback rows deleted to make room, by reason: contributor_cap (the same contributor's oldest), "
            "table_full (the oldest of the contributor holding the most rows).",
            ["reason"], registry=r,
        )
        self.donations = Counter(
            f"{PREFIX}_donations",
            "Calibration donations at the end of a game, by outcome: stored, refused_address (per-address "
            "daily cap), refused_full (folder byte cap), error.",
            ["result"], registry=r,
        )
        self.donation_samples = Counter(
            f"{PREFIX}_donation_samples",
            "Donated calibration samples, by outcome: stored, capped (beyond the per-game caps), refused "
            "(their donation was refused).",
            ["result"], registry=r,
        )
        self.donations_bytes = Gauge(
            f"{PREFIX}_donations_bytes", "Bytes in the donation folder, as of the last donation.", registry=r
        )
        self.feature_drift_psi = Gauge(
            f"{PREFIX}_feature_drift_psi",
            "Population stability index of each feature: live window vs the served model's training data.",
            ["feature"], registry=r,
        )
        self.feature_drift_ks = Gauge(
            f"{PREFIX}_feature_drift_ks",
            "Kolmogorov-Smirnov statistic of each feature: live window vs training data.",
            ["feature"], registry=r,
        )
        self.drift_score = Gauge(
            f"{PREFIX}_drift_score",
            "Summary drift by kind: features_psi_mean, features_psi_max, features_ks_max, "
            "brightness_psi, sharpness_psi.",
            ["kind"], registry=r,
        )
        self.class_drift_psi = Gauge(
            f"{PREFIX}_class_drift_psi",
            "Mean feature PSI of the frames predicted as a gesture vs that class's training rows.",
            ["gesture"], registry=r,
        )
        self.drift_window_frames = Gauge(
            f"{PREFIX}_drift_window_frames", "Frames in the drift window, by content (hand, all).",
            ["content"], registry=r,
        )
        # --- session store (docs/scaling.md) ---------------------------------------------------
        self.store_up = Gauge(
            f"{PREFIX}_store_up", "1 while the session store is reachable, 0 while degraded.", ["backend"],
            registry=r,
        )
        self.store_errors = Counter(
            f"{PREFIX}_store_errors", "Session store writes that failed (store unreachable).", registry=r
        )
        self.store_write_seconds = Histogram(
            f"{PREFIX}_store_write_seconds", "Time to store one state change (before it is sent).",
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.spectator_resyncs = Counter(
            f"{PREFIX}_spectator_resyncs", "Full-state resyncs of relayed spectators after a gap.", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
