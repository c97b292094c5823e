"""One settings object for the whole server, read from environment variables.

Every knob lives here so the docs' configuration table (generated from this file, one table per
`# --- block ---`) and the code cannot drift: each field names its environment variable and its
description in its metadata, and `Settings.from_env()` is the only reader of `os.environ`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from model.registry import DEFAULT_DATA_DIR
from model.schemes import DEFAULT_COUNTING_MAP


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used."""


def _env(name: str, default: Any, doc: str) -> Any:
    return field(default=default, metadata={"env": name, "doc": doc})


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected a boolean, got {raw!r}")


def _parse_tuple(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _parse_fractions(raw: str) -> tuple[float, ...]:
    values = tuple(float(part) for part in _parse_tuple(raw))
    if any(not 0.0 < v <= 2.0 for v in values):
        raise ValueError(f"expected fractions in (0, 2], got {raw!r}")
    return values


def _parse_mapping(raw: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for part in _parse_tuple(raw):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"expected key=value pairs, got {part!r}")
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


_PARSERS: dict[Any, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": _parse_bool,
    "str | None": lambda raw: raw or None,
    "int | None": lambda raw: int(raw) if raw else None,
    "tuple[str, ...]": _parse_tuple,
    "tuple[float, ...]": lambda raw: _parse_fractions(raw),
    "tuple[tuple[str, str], ...]": _parse_mapping,
}


@dataclass(frozen=True)
class Settings:
    # --- server -------------------------------------------------------------------------------
    host: str = _env("GM_HOST", "127.0.0.1", "Address uvicorn binds to.")
    port: int = _env("GM_PORT", 8000, "TCP port uvicorn listens on.")
    log_level: str = _env("GM_LOG_LEVEL", "info", "Python log level (debug, info, warning, error).")
    data_dir: str = _env(
        "GM_DATA_DIR", DEFAULT_DATA_DIR,
        "Directory for local state (MLflow sqlite store, artifacts); never inside the checkout by default.",
    )

    edge_assets_dir: str = _env(
        "GM_EDGE_ASSETS_DIR", "~/.cache/gesture-maze/edge",
        "Where `gesture-maze edge-assets` unpacks edge mode's browser runtime (MediaPipe Hands for the "
        "web), served from here under /vendor/mediapipe-hands/.",
    )
    npm_registry: str = _env(
        "GM_NPM_REGISTRY", "https://registry.npmjs.org",
        "npm registry `gesture-maze edge-assets` downloads the pinned package from (integrity-checked).",
    )

    # --- maze and sessions -------------------------------------------------------------------
    maze_width: int = _env("GM_MAZE_WIDTH", 7, "Width of level 1 when a session does not ask for one.")
    maze_height: int = _env("GM_MAZE_HEIGHT", 7, "Height of level 1 when a session does not ask for one.")
    maze_max_size: int = _env("GM_MAZE_MAX_SIZE", 40, "Largest width/height a level may grow to.")
    level_growth: int = _env("GM_LEVEL_GROWTH", 2, "Cells added to width and height per level won.")
    max_sessions: int = _env("GM_MAX_SESSIONS", 200, "Live sessions before new ones are refused (503).")
    session_grace_s: float = _env(
        "GM_SESSION_GRACE_S", 120.0, "A session with no player connected is reaped after this many seconds."
    )
    idle_timeout_s: float = _env(
        "GM_IDLE_TIMEOUT_S", 300.0, "A player socket that sends nothing for this long is closed."
    )
    win_pause_s: float = _env(
        "GM_WIN_PAUSE_S",
        0.0,
        "After a win, start the next level by itself after this many seconds when the player sends no "
        "camera frames (0: only `next_level` or a neutral hand starts it).",
    )
    max_spectators: int = _env("GM_MAX_SPECTATORS", 50, "Spectators per session.")
    send_queue_size: int = _env(
        "GM_SEND_QUEUE_SIZE", 64, "Messages buffered per connection before the overflow policy applies."
    )
    send_timeout_s: float = _env(
        "GM_SEND_TIMEOUT_S", 10.0, "A send blocked this long closes the socket (4001 too slow)."
    )
    reaper_interval_s: float = _env(
        "GM_REAPER_INTERVAL_S", 5.0, "How often abandoned sessions (and idle hand trackers) are looked for."
    )
    presence_interval_ms: int = _env(
        "GM_PRESENCE_INTERVAL_MS", 500,
        "Spectators joining or leaving: the new count goes out at most once per this gap (one state, "
        "not one per join or leave).",
    )
    lobby_cache_s: float = _env(
        "GM_LOBBY_CACHE_S", 1.0,
        "The lobby listing is rebuilt at most once per this many seconds, whatever the request rate "
        "(at once after a game is created or ends on this instance).",
    )
    lobby_page_size: int = _env(
        "GM_LOBBY_PAGE_SIZE", 100, "Largest page of `GET /api/sessions` (`?limit=`, default this)."
    )
    lobby_max: int = _env("GM_LOBBY_MAX", 1000, "Public games the lobby lists at most, over all pages.")
    ws_joins_per_10s: int = _env(
        "GM_WS_JOINS_PER_10S", 100,
        "WebSocket handshakes (play and watch) per client address per 10 s; more are answered HTTP 429 "
        "`rate_limited` before the upgrade (0: no limit).",
    )
    ws_join_burst: int = _env(
        "GM_WS_JOIN_BURST", 20,
        "Handshakes one client address may open at once before GM_WS_JOINS_PER_10S paces it (a page "
        "needs one or two; a burst of joins is what stalls the event loop).",
    )
    ws_joins_per_s: int = _env(
        "GM_WS_JOINS_PER_S", 200,
        "WebSocket handshakes per second over all addresses (bursting to a quarter of it), so many "
        "addresses churning together cannot stall the players either (0: no limit).",
    )
    api_reads_per_10s: int = _env(
        "GM_API_READS_PER_10S", 100,
        "`GET /api/sessions` and `GET /api/sessions/{id}` per client address per 10 s, burst as large; "
        "more get HTTP 429 `rate_limited` with Retry-After (0: no limit).",
    )

    # --- game feel: level change, shared control (docs/decisions/0013-game-feel.md) ------------
    win_card_min_s: float = _env(
        "GM_WIN_CARD_MIN_S",
        1.0,
        "A neutral hand starts the next level only after the win card showed this long.",
    )
    neutral_hold_ms: int = _env(
        "GM_NEUTRAL_HOLD_MS",
        300,
        "How long the camera must show no steering gesture to count as a neutral hand.",
    )
    manual_lockout_ms: int = _env(
        "GM_MANUAL_LOCKOUT_MS", 1200, "After a keyboard/touch move, gesture moves are ignored for this long."
    )

    # --- recognition pipeline ----------------------------------------------------------------
    workers: int | None = _env(
        "GM_WORKERS", None, "Threads in the shared frame pool (default: CPU count)."
    )
    classify_batch: int = _env(
        "GM_CLASSIFY_BATCH", 32,
        "Most hands (of all players) classified in one pass over the model; 1 = one at a time.",
    )
    classify_linger_ms: float = _env(
        "GM_CLASSIFY_LINGER_MS", 5.0,
        "Longest a hand waits for another player's, already being read in the pool, to share its pass.",
    )
    model_complexity: int = _env(
        "GM_MODEL_COMPLEXITY", 0, "MediaPipe Hands model: 0 = lite (~1.5x players per core), 1 = full."
    )
    min_detection_confidence: float = _env(
        "GM_MIN_DETECTION_CONFIDENCE", 0.5, "MediaPipe palm detection threshold."
    )
    min_tracking_confidence: float = _env(
        "GM_MIN_TRACKING_CONFIDENCE", 0.5, "MediaPipe landmark tracking threshold."
    )
    max_trackers: int = _env(
        "GM_MAX_TRACKERS", 32,
        "Hand trackers (MediaPipe graphs, ~60 MiB each) held at once, server-wide; a player beyond "
        "this gets `too_many_streams` and plays with the keyboard (0: no cap).",
    )
    max_trackers_per_ip: int = _env(
        "GM_MAX_TRACKERS_PER_IP", 4, "Hand trackers one client address may hold at once (0: no cap)."
    )
    tracker_idle_s: float = _env(
        "GM_TRACKER_IDLE_S", 15.0,
        "A player's tracker is released after this many seconds without a camera frame (0: kept).",
    )
    send_landmarks: bool = _env(
        "GM_SEND_LANDMARKS", True, "Include the 21 landmarks in `frame` replies to JPEG frames."
    )
    spectator_gesture_interval_ms: int = _env(
        "GM_SPECTATOR_GESTURE_INTERVAL_MS", 250, "Minimum gap between `gesture` messages to spectators."
    )
    default_scheme: str = _env("GM_DEFAULT_SCHEME", "counting", "Control scheme of a new session.")
    counting_map: tuple[tuple[str, str], ...] = _env(
        "GM_COUNTING_MAP",
        DEFAULT_COUNTING_MAP,
        "gesture=direction pairs for the `counting` scheme (comma separated).",
    )

    # --- temporal smoothing ------------------------------------------------------------------
    hold_frames: int = _env("GM_HOLD_FRAMES", 3, "Frames a gesture must be held before it fires.")
    hold_ms: int = _env(
        "GM_HOLD_MS", 180, "...or this many ms, whichever comes first (with hold_frames >= 2)."
    )
    min_confidence: float = _env("GM_MIN_CONFIDENCE", 0.55, "Mean confidence a held gesture needs to fire.")
    repeat_ms: int = _env("GM_REPEAT_MS", 600, "A gesture still held repeats its move every this many ms.")

    # --- model -------------------------------------------------------------------------------
    model_uri: str | None = _env(
        "GESTURE_MODEL_URI", None, "MLflow model URI to serve (e.g. models:/gesture-classifier@champion)."
    )
    mlflow_tracking_uri: str | None = _env(
        "MLFLOW_TRACKING_URI", None, "MLflow store for models:/ URIs (default: sqlite under GM_DATA_DIR)."
    )
    model_poll_s: float = _env(
        "GM_MODEL_POLL_S", 30.0, "How often the registry alias is checked for a new champion (0 = never)."
    )

    # --- feedback loop and drift (docs/mlops-loop.md) -----------------------------------------
    undo_window_s: float = _env(
        "GM_UNDO_WINDOW_S", 4.0, "Seconds after a gesture move during which the player may undo it."
    )
    feedback_url: str | None = _env(
        "GM_FEEDBACK_URL", None,
        "SQLAlchemy URL of the feedback store (default: sqlite:///<GM_DATA_DIR>/feedback.db).",
    )
    feedback_max_events: int = _env(
        "GM_FEEDBACK_MAX_EVENTS", 50_000, "Feedback rows kept; the oldest are deleted beyond this."
    )
    feedback_frames: int = _env(
        "GM_FEEDBACK_FRAMES", 8, "Recent hand frames kept per session; those that fired a move are stored."
    )
    feedback_game_per_min: int = _env(
        "GM_FEEDBACK_GAME_PER_MIN", 6,
        "Corrections one game (session) may store per minute, bursting to this many; more are not "
        "stored (`gesture_maze_feedback_total{result=\"refused_game_rate\"}`; 0 = no cap).",
    )
    feedback_game_max: int = _env(
        "GM_FEEDBACK_GAME_MAX", 60,
        "Corrections stored per game (session key) in all; more are refused (`refused_game_total`; "
        "0 = no cap).",
    )
    feedback_address_per_hour: int = _env(
        "GM_FEEDBACK_ADDRESS_PER_HOUR", 60,
        "Corrections one client address (IPv6: its /64) may store per hour over all its games, bursting "
        "to this many; more are not stored (`refused_address_rate`; 0 = no cap).",
    )
    feedback_address_max: int = _env(
        "GM_FEEDBACK_ADDRESS_MAX", 500,
        "Rows one contributor (client address) holds in the feedback table; beyond it that contributor's "
        "own oldest row is deleted, nobody else's (0 = no cap).",
    )
    contributor_secret: str | None = _env(
        "GM_CONTRIBUTOR_SECRET", None,
        "Key of the hash that turns a client address into the opaque contributor id stored with feedback "
        "and donations (never the address itself). Unset: a random key kept in "
        "<GM_DATA_DIR>/contributor.key; instances that share a feedback store or donation folder across "
        "hosts must set the same value.",
    )
    donation_max_per_gesture: int = _env(
        "GM_DONATION_MAX_PER_GESTURE", 20,
        "Calibration samples per gesture one game may donate (spread over what was recorded); the rest "
        "are dropped with the session.",
    )
    donation_max_samples: int = _env(
        "GM_DONATION_MAX_SAMPLES", 120, "Calibration samples one game may donate in all (one CSV file)."
    )
    donations_address_per_day: int = _env(
        "GM_DONATIONS_ADDRESS_PER_DAY", 3,
        "Donation files one client address (contributor) may add per 24 h; more are refused "
        "(`gesture_maze_donations_total{result=\"refused_address\"}`; 0 = no cap).",
    )
    donations_max_bytes: int = _env(
        "GM_DONATIONS_MAX_BYTES", 256 * 1024 * 1024,
        "Bytes the donation folder (<GM_DATA_DIR>/donations) may hold; a donation that would pass it is "
        "refused with a warning log (`result=\"refused_full\"`; 0 = no cap).",
    )
    drift_window: int = _env(
        "GM_DRIFT_WINDOW", 600, "Recent frames (landmarks + brightness/sharpness) drift is computed over."
    )
    drift_interval_s: float = _env(
        "GM_DRIFT_INTERVAL_S", 15.0, "How often drift statistics are recomputed (0 = never)."
    )
    drift_min_frames: int = _env(
        "GM_DRIFT_MIN_FRAMES", 50, "Hands in the window before feature drift is reported."
    )

    # --- still images: POST /predict (docs/recognition.md) -------------------------------------
    predict_pad: tuple[float, ...] = _env(
        "GM_PREDICT_PAD", (0.25, 0.5),
        "POST /predict: when no hand is found, retry on the image padded by these fractions of its longer "
        "side on every side, in order (comma separated; empty: no retry).",
    )
    predict_per_ip: int = _env(
        "GM_PREDICT_PER_IP", 2,
        "POST /predict requests one client address may have admitted at once (body being read, waiting "
        "or running); more: 429 `too_many_in_flight`, answered before the body is read (0 = no cap).",
    )
    predict_queue: int = _env(
        "GM_PREDICT_QUEUE", 16,
        "POST /predict requests admitted at once server-wide (it bounds their bodies in memory to this "
        "many times the frame limit); more: 503 `server_busy`, answered before the body is read.",
    )
    predict_wait_s: float = _env(
        "GM_PREDICT_WAIT_S", 2.0,
        "How long an admitted POST /predict waits for its turn in the frame pool (turns go round-robin "
        "across client addresses); longer: 503 `server_busy`.",
    )
    multipart_max_parts: int = _env(
        "GM_MULTIPART_MAX_PARTS", 4,
        "Parts a multipart/form-data body may have (POST /predict reads one, field `file`); more: 400 "
        "`too_many_parts`, found with bounded work off the event loop.",
    )
    body_timeout_s: float = _env(
        "GM_BODY_TIMEOUT_S", 10.0,
        "A request body (POST /predict, POST /api/sessions) not complete this long after the app began "
        "reading it: 408 `body_timeout` (0 = no deadline).",
    )

    # --- message size, rate and origin limits (docs/security.md) ------------------------------
    max_frame_bytes: int = _env("GM_MAX_FRAME_BYTES", 512 * 1024, "Largest binary frame accepted.")
    max_frame_width: int = _env("GM_MAX_FRAME_WIDTH", 1920, "Largest decoded frame width.")
    max_frame_height: int = _env("GM_MAX_FRAME_HEIGHT", 1920, "Largest decoded frame height.")
    max_text_bytes: int = _env("GM_MAX_TEXT_BYTES", 4096, "Largest text (JSON) message accepted.")
    max_fps: float = _env("GM_MAX_FPS", 30.0, "Frame-rate cap per session (token bucket); excess is dropped.")
    max_text_per_s: float = _env(
        "GM_MAX_TEXT_PER_S", 50.0, "Text messages per second per player; excess is ignored (0 = no cap)."
    )
    max_connections_per_ip: int = _env("GM_MAX_CONNECTIONS_PER_IP", 64, "Open WebSockets per client address.")
    session_create_per_min: int = _env(
        "GM_SESSION_CREATE_PER_MIN", 60, "Sessions one client address may create per minute."
    )
    allowed_origins: tuple[str, ...] = _env(
        "GM_ALLOWED_ORIGINS", (), "Extra browser origins allowed for WebSockets and CORS (comma separated)."
    )

    # --- transport and connection limits, hosts and session slots (docs/security.md) -----------
    allowed_hosts: tuple[str, ...] = _env(
        "GM_ALLOWED_HOSTS",
        (),
        "Host names the server answers to besides localhost, IP literals and GM_HOST (comma "
        "separated; `*` = any). Other Host headers get 400 (DNS rebinding).",
    )
    max_header_bytes: int = _env(
        "GM_MAX_HEADER_BYTES", 16 * 1024, "Largest request head (request line + headers); larger: 431."
    )
    max_header_line_bytes: int = _env(
        "GM_MAX_HEADER_LINE_BYTES", 8190, "Longest request line or header line; longer: 414 / 431."
    )
    max_header_count: int = _env("GM_MAX_HEADER_COUNT", 100, "Most header lines in one request; more: 431.")
    header_timeout_s: float = _env(
        "GM_HEADER_TIMEOUT_S", 10.0, "A request head not complete this long after it began: 408, closed."
    )
    max_sockets_per_ip: int = _env(
        "GM_MAX_SOCKETS_PER_IP", 128, "Open TCP connections per client address (0 = no cap: behind a proxy)."
    )
    limit_concurrency: int | None = _env(
        "GM_LIMIT_CONCURRENCY",
        None,
        "Connections served before new requests get 503 (default: the open-file limit minus a reserve).",
    )
    ws_max_fragments: int = _env(
        "GM_WS_MAX_FRAGMENTS", 64, "WebSocket frames one message may be split into; more: close 1009."
    )
    ws_max_buffered_bytes: int = _env(
        "GM_WS_MAX_BUFFERED_BYTES",
        1024 * 1024,
        "Unsent bytes to a client at which its further pings close the socket (1008: it does not read).",
    )
    ws_max_pings_per_s: float = _env(
        "GM_WS_MAX_PINGS_PER_S", 5.0, "WebSocket pings per second per socket (burst 20); more: close 1008."
    )
    forwarded_allow_ips: str | None = _env(
        "GM_FORWARDED_ALLOW_IPS",
        None,
        "Reverse-proxy addresses trusted for X-Forwarded-For (comma separated); they are exempt from "
        "GM_MAX_SOCKETS_PER_IP. Unset: proxy headers are ignored.",
    )
    max_sessions_per_ip: int = _env(
        "GM_MAX_SESSIONS_PER_IP", 10, "Live sessions one client address may hold (0 = no cap); more: 429."
    )
    unjoined_session_ttl_s: float = _env(
        "GM_UNJOINED_SESSION_TTL_S", 30.0, "A session no player has ever joined is removed after this long."
    )
    # --- durable sessions and scale-out (docs/scaling.md) -----------------------------------
    store_url: str | None = _env(
        "GM_STORE_URL",
        None,
        "Where game state lives: unset = sqlite file sessions.db under GM_DATA_DIR (one process); "
        "sqlite:///path; redis://host:port/db = shared by several instances/processes.",
    )
    store_lease_s: float = _env(
        "GM_STORE_LEASE_S", 10.0, "Player lease of an instance on a session (refreshed every third of it)."
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every field from `environ` (default: os.environ); keyword overrides win."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.metadata["env"]
            if name not in environ:
                continue
            parser = _PARSERS[f.type]
            try:
                values[f.name] = parser(environ[name])
            except ValueError as exc:
                raise SettingsError(f"{name}: {exc}") from None
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


def documented_settings() -> list[tuple[str, Any, str]]:
    """(env name, default, description) of every setting, for the docs and their tests."""
    return [(f.metadata["env"], f.default, f.metadata["doc"]) for f in dataclasses.fields(Settings)]
