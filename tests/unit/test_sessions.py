"""Sessions and the registry: moves, wins, levels, presence, tokens, caps and reaping (fake clock)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from maze import Direction, GameConfig, Point, solve
from stream.edge.connection import Connection
from stream.metrics import Metrics
from stream.sessions.registry import Session, SessionLimitError, SessionOptions, SessionRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class RecordingSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: int | None = None

    async def send_text(self, data: str) -> None:
        self.sent.append(json.loads(data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = code


def options(**changes: Any) -> SessionOptions:
    base = dict(width=5, height=5, seed=1, scheme="counting", private=False)
    base.update(changes)
    return SessionOptions(**base)


def config_for(opts: SessionOptions) -> GameConfig:
    return GameConfig(width=opts.width, height=opts.height, growth=2, max_size=9)


def new_session(clock: Clock | None = None, metrics: Metrics | None = None, **changes: Any) -> Session:
    opts = options(**changes)
    return Session("s1", opts, config_for(opts), metrics=metrics, win_pause_s=0.0, clock=clock or Clock())


def connect(
    session: Session, role: str = "spectator"
) -> tuple[Connection, RecordingSocket, asyncio.Task[None]]:
    sock = RecordingSocket()
    conn = Connection(sock, role, queue_size=64, send_timeout_s=5, latest_state=session.latest_state)
    task = asyncio.ensure_future(conn.run_sender())
    if role == "player":
        session.attach_player(conn)
    else:
        session.add_spectator(conn)
    return conn, sock, task


async def settle() -> None:
    """Let the sender tasks (and a zero-length win pause) run to completion."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_moves_produce_one_versioned_state_each_for_everyone() -> None:
    metrics = Metrics(process=False)
    session = new_session(metrics=metrics)
    _, player_sock, _ = connect(session, "player")
    _, watcher_sock, _ = connect(session)
    maze = session.game.maze
    wall = next(d for d in Direction if not maze.can_move(Point(0, 0), d))
    step = solve(maze, Point(0, 0))[0]
    bump = session.move(wall, "keyboard")
    assert bump is not None and not bump.ok and session.game.moves == 0
    moved = session.move(step, "gesture")
    assert moved is not None and moved.ok and session.game.moves == 1
    await settle()
    player_states = [m for m in player_sock.sent if m["type"] == "state"]
    watcher_states = [m for m in watcher_sock.sent if m["type"] == "state"]
    assert player_states[-2]["last_move"] == {"direction": wall.value, "ok": False, "source": "keyboard"}
    assert player_states[-1]["last_move"] == {"direction": step.value, "ok": True, "source": "gesture"}
    assert watcher_states[-2:] == player_states[-2:]  # the same snapshot, byte for byte
    # The spectator joined right after the player: it got the current state (1) at once, and its
    # arrival rode on the next state instead of making one of its own (presence is coalesced).
    assert [s["version"] for s in watcher_states] == list(range(1, session.version + 1))
    assert metrics.moves.labels(direction=wall.value, source="keyboard", result="wall")._value.get() == 1
    assert metrics.moves.labels(direction=step.value, source="gesture", result="ok")._value.get() == 1


async def test_spectator_churn_makes_a_few_states_not_one_per_join() -> None:
    clock = Clock()
    session = new_session(clock=clock)
    _, player_sock, _ = connect(session, "player")
    clock.now += 1.0  # the player's own state is older than the presence interval
    crowd = [connect(session)[0] for _ in range(40)]
    for conn in crowd[:30]:
        session.remove_spectator(conn)
    await settle()
    states = [m for m in player_sock.sent if m["type"] == "state"]
    assert [s["spectators"] for s in states] == [0, 1]  # the first join at once, the rest waits
    await asyncio.sleep(session.context.presence_interval_s + 0.2)  # the coalesced count, once
    await settle()
    states = [m for m in player_sock.sent if m["type"] == "state"]
    assert [s["spectators"] for s in states] == [0, 1, 10]
    assert all(len([m for m in c.socket.sent if m["type"] == "state"]) >= 1 for c in crowd[30:])


async def test_win_then_next_bigger_level_when_asked() -> None:
    session = new_session()
    _, sock, _ = connect(session, "player")
    assert session.next_level() is False  # not won yet
    for direction in solve(session.game.maze, Point(0, 0)):
        session.move(direction, "keyboard")
    assert not session.playing and session.move(Direction.UP, "keyboard") is None
    await settle()
    assert session.game.level == 1 and not session.playing  # the win card stays until asked
    assert session.next_level() is True
    await settle()
    assert session.game.level == 2 and session.playing
    assert (session.game.maze.width, session.game.maze.height) == (7, 7)
    kinds = [m["type"] for m in sock.sent]
    won_at = kinds.index("won")
    assert sock.sent[won_at - 1]["status"] == "won"  # the winning state comes first, then `won`
    assert sock.sent[-1]["level"] == 2 and "maze" in sock.sent[-1]


def test_seeded_sessions_replay_the_same_levels() -> None:
    first, second = new_session(seed=42), new_session(seed=42)
    assert first.game.maze == second.game.maze
    for session in (first, second):
        session.game.status = session.game.status.__class__("won")  # skip playing: only seeds matter here
        session.game.won_at = 0.0
        session.next_level()
    assert first.game.maze == second.game.maze and first.game.maze.width == 7


async def test_restart_keeps_the_maze_and_resends_it() -> None:
    session = new_session()
    _, sock, _ = connect(session, "player")
    step = solve(session.game.maze, Point(0, 0))[0]
    session.move(step, "keyboard")
    maze_version = session.game.maze_version
    session.restart()
    await settle()
    assert session.game.player == Point(0, 0) and session.game.moves == 0
    assert session.game.maze_version == maze_version + 1
    assert "maze" in sock.sent[-1] and "maze" not in sock.sent[-2]


async def test_a_new_player_connection_replaces_the_old_one() -> None:
    session = new_session()
    old, old_sock, old_task = connect(session, "player")
    new, _, _ = connect(session, "player")
    await asyncio.wait_for(old_task, 5)
    assert old_sock.closed == 4000 and session.player is new
    session.detach_player(old)  # the old handler finishing must not unseat the new player
    assert session.player is new
    session.detach_player(new)
    assert session.player is None and session.player_left_at == session._clock()


def test_tokens() -> None:
    public = new_session()
    assert public.player_token_ok(public.player_token)
    assert not public.player_token_ok(public.player_token[:-1])
    assert not public.player_token_ok(None) and not public.player_token_ok("")
    assert public.watch_token is None and public.watch_token_ok(None)
    private = new_session(private=True)
    assert private.watch_token and private.watch_token != private.player_token
    assert not private.watch_token_ok(None) and not private.watch_token_ok("guess")
    assert private.watch_token_ok(private.watch_token) and private.watch_token_ok(private.player_token)


async def test_registry_caps_lists_and_reaps() -> None:
    clock = Clock()
    metrics = Metrics(process=False)
    registry = SessionRegistry(max_sessions=2, config_for=config_for, metrics=metrics, clock=clock)
    kept = registry.create(options())
    hidden = registry.create(options(private=True))
    with pytest.raises(SessionLimitError):
        registry.create(options())
    assert registry.public() == [kept] and registry.get(hidden.id) is hidden
    assert metrics.sessions._value.get() == 2

    conn, _, _ = connect(kept, "player")  # a connected player keeps a session alive forever
    clock.now += 1000
    assert await registry.reap(grace_s=60) == 1
    assert registry.get(hidden.id) is None and hidden.closed
    kept.detach_player(conn)
    clock.now += 30
    assert await registry.reap(grace_s=60) == 0
    clock.now += 31
    assert await registry.reap(grace_s=60) == 1
    assert len(registry) == 0 and metrics.sessions._value.get() == 0
