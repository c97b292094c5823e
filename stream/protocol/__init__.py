"""The protocol's one home: codes (`codes`), client messages and their schemas (`client`), server
messages (`server`), the inter-instance channel (`events`) and the HTTP error body (`errors`).

The names most code needs are re-exported here; each is defined in exactly one submodule.
"""

from stream.protocol.client import (
    CalibrateMessage,
    CalibrationResetMessage,
    ClientMessage,
    ConsentMessage,
    DonateMessage,
    MoveMessage,
    NextLevelMessage,
    PingMessage,
    ProtocolError,
    RestartMessage,
    SchemeMessage,
    ShareHandMessage,
    UndoMessage,
    client_types,
    parse_client_message,
)
from stream.protocol.codes import *  # noqa: F403  (the codes are this package's vocabulary)
from stream.protocol.server import (
    SERVER_TYPES,
    CalibrationStatus,
    ErrorMessage,
    FrameReply,
    GestureNotice,
    LastMove,
    Limits,
    Pong,
    StateBody,
    StateSnapshot,
    Undone,
    Welcome,
    Won,
    encode,
)

CLIENT_TYPES = client_types()

__all__ = [  # noqa: RUF022  (grouped by submodule)
    "CalibrateMessage", "CalibrationResetMessage", "ClientMessage", "ConsentMessage", "DonateMessage",
    "MoveMessage", "NextLevelMessage", "PingMessage", "ProtocolError", "RestartMessage", "SchemeMessage",
    "ShareHandMessage", "UndoMessage", "client_types", "parse_client_message", "CLIENT_TYPES",
    "SERVER_TYPES", "CalibrationStatus", "ErrorMessage", "FrameReply", "GestureNotice", "LastMove",
    "Limits", "Pong", "StateBody", "StateSnapshot", "Undone", "Welcome", "Won", "encode",
]
