"""Who is connected to one session: the player's connection, local spectators, seats being taken,
and the spectators other instances relay. Delivery only queues (stream.edge.connection), so
delivering to a crowd never waits on a socket."""

from __future__ import annotations

from stream.edge.connection import Connection
from stream.protocol.codes import CLOSE_REPLACED
from stream.protocol.server import StateSnapshot


class Audience:
    def __init__(self) -> None:
        self.player: Connection | None = None
        self.spectators: set[Connection] = set()
        self.joining = 0  # spectator handshakes between the cap check and join()
        self.remote = 0  # spectators watching through other instances (shared store)
        self.latest: StateSnapshot | None = None  # the newest state delivered

    @property
    def watching(self) -> int:
        """The spectator count every state shows."""
        return len(self.spectators) + self.remote

    def seats_taken(self) -> int:
        return len(self.spectators) + self.joining

    def connections(self) -> list[Connection]:
        return [self.player, *self.spectators] if self.player is not None else list(self.spectators)

    def seat_player(self, conn: Connection) -> None:
        """`conn` is the player now; an older player connection is closed with 4000 "replaced"."""
        old, self.player = self.player, conn
        if old is not None and old is not conn:
            old.close(CLOSE_REPLACED, "replaced")

    def deliver_state(self, snapshot: StateSnapshot) -> None:
        self.latest = snapshot
        for conn in self.connections():
            conn.send_state(snapshot)

    def deliver_encoded(self, kind: str, text: str, spectators_only: bool = False) -> None:
        for conn in self.spectators if spectators_only else self.connections():
            conn.send_encoded(kind, text)

    def close_all(self, code: int, reason: str) -> None:
        for conn in self.connections():
            conn.close(code, reason)
