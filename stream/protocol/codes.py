"""Every code a client can be told, in one place (as Starlette's `status.py` does for HTTP):
WebSocket close codes, and the `code` of `error` messages and of HTTP error bodies
(`{"error": {"code", "message"}}`). docs/protocol.md lists them; a test keeps the two in step.
Frame errors (`model.frames.FRAME_ERROR_CODES`) are the model's and are re-used as they are.
"""

from __future__ import annotations

# --- WebSocket close codes --------------------------------------------------------------------
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # server shutdown, session closed or expired
CLOSE_POLICY = 1008  # not allowed here: unknown session, wrong token, foreign origin or host, caps
CLOSE_TOO_BIG = 1009  # a frame above the transport limit (uvicorn's ws_max_size)
CLOSE_REPLACED = 4000  # a newer player connection took over
CLOSE_TOO_SLOW = 4001  # a send blocked longer than GM_SEND_TIMEOUT_S
CLOSE_IDLE = 4002  # a player socket sent nothing for GM_IDLE_TIMEOUT_S

# --- client messages that cannot be accepted ---------------------------------------------------
BAD_JSON = "bad_json"
BAD_MESSAGE = "bad_message"
UNKNOWN_TYPE = "unknown_type"
BAD_FIELD = "bad_field"
MESSAGE_TOO_LARGE = "message_too_large"
RATE_LIMITED = "rate_limited"

# --- access and capacity -----------------------------------------------------------------------
NOT_FOUND = "not_found"
FORBIDDEN = "forbidden"
READ_ONLY = "read_only"
SERVER_FULL = "server_full"
TOO_MANY_SESSIONS = "too_many_sessions"
TOO_MANY_SPECTATORS = "too_many_spectators"
TOO_MANY_CONNECTIONS = "too_many_connections"
SERVER_BUSY = "server_busy"
TOO_MANY_STREAMS = "too_many_streams"  # the server holds as many hand trackers as it may
TOO_MANY_IN_FLIGHT = "too_many_in_flight"  # this address already has its share of requests in progress
SHUTTING_DOWN = "shutting_down"
STORE_UNAVAILABLE = "store_unavailable"  # the session store is unreachable: changes are paused
HOST_NOT_ALLOWED = "host_not_allowed"
ORIGIN_NOT_ALLOWED = "origin_not_allowed"

# --- game and recognition ----------------------------------------------------------------------
NOT_PLAYING = "not_playing"
NOT_WON = "not_won"
NOTHING_TO_UNDO = "nothing_to_undo"
CALIBRATING = "calibrating"  # a keyboard move while the game is paused for calibration
PROCESSING_FAILED = "processing_failed"
MODEL_UNAVAILABLE = "model_unavailable"
IDLE_TIMEOUT = "idle_timeout"

# --- HTTP requests -----------------------------------------------------------------------------
BAD_REQUEST = "bad_request"
BODY_TOO_LARGE = "body_too_large"
BODY_TIMEOUT = "body_timeout"  # the request body did not arrive within GM_BODY_TIMEOUT_S
TOO_MANY_PARTS = "too_many_parts"  # a multipart body with more than GM_MULTIPART_MAX_PARTS parts
REQUEST_LINE_TOO_LONG = "request_line_too_long"
HEADER_TOO_LARGE = "header_too_large"
HEADER_TIMEOUT = "header_timeout"
INTERNAL_ERROR = "internal_error"


def error_codes() -> frozenset[str]:
    """Every error code declared here (for the docs check and for clients that want the list)."""
    return frozenset(v for k, v in globals().items() if k.isupper() and isinstance(v, str))
