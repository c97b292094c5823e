"""Simulated players, spectators and seed-style `POST /predict` clients.

A player behaves like the web client: one frame per tick at F fps, but only while fewer than
`max_in_flight` frames are unanswered (the server numbers binary frames 1, 2, 3... per connection and
answers each processed one with a `frame` reply carrying that `seq`; a reply for seq s also settles
every older unanswered frame, which the server dropped in favour of a newer one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from stream.loadtest.frames import FrameSource
from stream.loadtest.stats import PlayerStats, SpectatorStats

clock = time.perf_counter  # one monotonic clock for every timestamp (players and spectators share it)

WS_MAX_SIZE = 4 * 1024 * 1024


@dataclass
class SessionInfo:
    session_id: str
    play_url: str
    watch_url: str
    # Receipt time of every state version by the player: spectators' delays are measured against it.
    player_versions: dict[int, float] = field(default_factory=dict)


def ws_base(http_base: str) -> str:
    if http_base.startswith("https://"):
        return "wss://" + http_base[len("https://"):]
    if http_base.startswith("http://"):
        return "ws://" + http_base[len("http://"):]
    return http_base


async def create_session(
    http: httpx.AsyncClient, base_url: str, stats: PlayerStats, scheme: str = "counting"
) -> SessionInfo | None:
    try:
        response = await http.post(f"{base_url}/api/sessions", json={"scheme": scheme}, timeout=15.0)
    except httpx.HTTPError as exc:
        stats.errors[f"http_{type(exc).__name__}"] += 1
        return None
    if response.status_code != 201:
        code = f"http_{response.status_code}"
        with contextlib.suppress(ValueError, KeyError, TypeError):
            code += f"_{response.json()['error']['code']}"
        stats.errors[code] += 1
        return None
    body = response.json()
    watch_url = body["watch_url"]
    if body.get("watch_token"):
        watch_url += f"?token={body['watch_token']}"
    base = ws_base(base_url)
    return SessionInfo(body["session_id"], base + body["play_url"], base + watch_url)


async def _connect(url: str, errors: Any) -> ClientConnection | None:
    try:
        return await connect(url, max_size=WS_MAX_SIZE, open_timeout=15, close_timeout=2, ping_interval=None)
    except InvalidStatus as exc:
        errors[f"ws_http_{exc.response.status_code}"] += 1
    except (OSError, WebSocketException, TimeoutError) as exc:
        errors[f"ws_connect_{type(exc).__name__}"] += 1
    return None


@dataclass
class _Pending:
    sent_at: float
    gesture: str
    counted: bool


@dataclass
class _MoveWait:
    since: float
    direction: str
    counted: bool


class Player:
    """Streams frames over the play socket until `stop_at`, then waits briefly for outstanding replies."""

    def __init__(
        self,
        source: FrameSource,
        *,
        fps: float,
        max_in_flight: int = 2,
        frame_timeout_s: float = 2.0,
        warmup_s: float = 1.0,
        counting_map: Mapping[str, str],
        stats: PlayerStats | None = None,
    ) -> None:
        self.source = source
        self.period = 1.0 / fps
        self.max_in_flight = max_in_flight
        self.frame_timeout_s = frame_timeout_s
        self.warmup_s = warmup_s
        self.counting_map = counting_map
        self.stats = stats or PlayerStats()
        self.welcomed = asyncio.Event()
        self._outstanding: dict[int, _Pending] = {}  # seq -> pending frame (dicts keep insertion order)
        self._seq = 0
        self._move_wait: _MoveWait | None = None
        self._session: SessionInfo | None = None
        self._closed = asyncio.Event()
        # Statistics start `warmup_s` after the first reply: the server builds the stream's MediaPipe graph
        # on the first frame, and that one-off cost is not what a player feels during a game.
        self._counting_from: float | None = None
        self._stopped_at: float | None = None
        self._settled = asyncio.Event()  # set whenever no frame is outstanding

    async def run(self, session: SessionInfo, stop_at: float) -> None:
        self._session = session
        ws = await _connect(session.play_url, self.stats.errors)
        if ws is None:
            self.welcomed.set()  # let waiting spectators give up
            return
        self.stats.connected = True
        receiver = asyncio.create_task(self._receive(ws))
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.welcomed.wait(), timeout=15)
            if not self.welcomed.is_set():
                self.stats.errors["no_welcome"] += 1
                return
            await self._send_loop(ws, stop_at)
            await self._drain()
        finally:
            self.welcomed.set()
            self.stats.frames_outstanding_at_end = sum(1 for p in self._outstanding.values() if p.counted)
            if self._counting_from is not None and self._stopped_at is not None:
                self.stats.measured_s = max(0.0, self._stopped_at - self._counting_from)
            await ws.close()
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver

    async def _send_loop(self, ws: ClientConnection, stop_at: float) -> None:
        start = clock()
        next_tick = start
        self._stopped_at = stop_at
        index = 0
        shown: str | None = None
        stats = self.stats
        while not self._closed.is_set():
            now = await _wait_until(next_tick, clock)
            if now >= stop_at:
                break
            counted = self._counting_from is not None and now >= self._counting_from
            self._expire(now)
            if counted:
                stats.ticks += 1
            if len(self._outstanding) < self.max_in_flight:
                gesture = self.source.gesture_at(now - start)
                data = self.source.frame(gesture, index)
                index += 1
                self._seq += 1
                self._outstanding[self._seq] = _Pending(now, gesture, counted)
                try:
                    await ws.send(data)
                except ConnectionClosed:
                    break
                if counted:
                    stats.frames_sent += 1
                    stats.bytes_sent += len(data)
                if gesture != shown:
                    self._gesture_changed(gesture, now, counted)
                    shown = gesture
            elif counted:
                stats.ticks_skipped += 1
            next_tick += self.period
            if next_tick < clock() - self.period:  # fell behind (client starved): don't burst to catch up
                next_tick = clock()

    def _gesture_changed(self, gesture: str, now: float, counted: bool) -> None:
        if self._move_wait is not None and self._move_wait.counted:
            self.stats.moves_missed += 1
        direction = self.counting_map.get(gesture)
        self._move_wait = _MoveWait(now, direction, counted) if direction else None
        if direction and counted:
            self.stats.gesture_changes += 1

    def _expire(self, now: float) -> None:
        for seq in [s for s, p in self._outstanding.items() if now - p.sent_at > self.frame_timeout_s]:
            if self._outstanding.pop(seq).counted:
                self.stats.frames_timed_out += 1

    async def _drain(self) -> None:
        """After the last tick, wait (bounded) until every frame is answered or the socket closed."""
        self._settled.clear()
        if not self._outstanding:
            return
        waiters = {asyncio.create_task(self._settled.wait()), asyncio.create_task(self._closed.wait())}
        _, pending = await asyncio.wait(
            waiters, timeout=self.frame_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()

    async def _receive(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                if isinstance(raw, bytes):
                    continue
                self._on_message(json.loads(raw), clock())
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            if code not in (None, 1000, 1001, 1005):
                self.stats.errors[f"closed_{code}"] += 1
        except (json.JSONDecodeError, WebSocketException, OSError) as exc:
            self.stats.errors[f"receive_{type(exc).__name__}"] += 1
        finally:
            self._closed.set()

    def _on_message(self, message: dict[str, Any], now: float) -> None:
        kind = message.get("type")
        stats = self.stats
        if kind == "frame":
            stats.replies_total += 1
            self._on_frame(message, now)
        elif kind == "state":
            stats.states += 1
            version = message.get("version")
            if self._session is not None and isinstance(version, int):
                self._session.player_versions.setdefault(version, now)
            last_move = message.get("last_move")
            if last_move and last_move.get("source") == "gesture":
                self._on_move(last_move, now)
        elif kind == "welcome":
            self.welcomed.set()
        elif kind == "error":
            stats.errors[str(message.get("code"))] += 1
            if self._outstanding:  # the oldest frame got an error instead of a reply: stop waiting for it
                self._outstanding.pop(next(iter(self._outstanding)))
                if not self._outstanding:
                    self._settled.set()

    def _on_frame(self, message: dict[str, Any], now: float) -> None:
        stats = self.stats
        seq = message.get("seq")
        stats.server_dropped = max(stats.server_dropped, int(message.get("dropped") or 0))
        if self._counting_from is None:
            self._counting_from = now + self.warmup_s
        pending = self._outstanding.pop(seq, None) if isinstance(seq, int) else None
        if isinstance(seq, int):
            for older in [s for s in self._outstanding if s < seq]:
                if self._outstanding.pop(older).counted:
                    stats.frames_dropped += 1
        if not self._outstanding:
            self._settled.set()
        if pending is None or not pending.counted:
            return
        stats.frames_processed += 1
        stats.frame_latency_ms.append((now - pending.sent_at) * 1000.0)
        if message.get("hand"):
            stats.hands += 1
        if message.get("gesture") == pending.gesture:
            stats.recognised += 1

    def _on_move(self, last_move: Mapping[str, Any], now: float) -> None:
        self.stats.moves_seen += 1  # includes repeats of a held gesture (the server repeats every repeat_ms)
        wait, self._move_wait = self._move_wait, None
        if wait is None or not wait.counted:
            return
        self.stats.move_latency_ms.append((now - wait.since) * 1000.0)
        if last_move.get("direction") != wait.direction:
            self.stats.moves_wrong_direction += 1


class Spectator:
    """Watches a session until told to stop; records when each state version arrived."""

    def __init__(self, stats: SpectatorStats | None = None) -> None:
        self.stats = stats or SpectatorStats()
        self.versions: dict[int, float] = {}
        self._first_state_seen = False

    async def run(self, session: SessionInfo, stop: asyncio.Event) -> None:
        ws = await _connect(session.watch_url, self.stats.errors)
        if ws is None:
            return
        self.stats.connected = True
        receiver = asyncio.create_task(self._receive(ws))
        try:
            await stop.wait()
            await asyncio.sleep(0.2)  # let the last broadcasts arrive
        finally:
            await ws.close()
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
        for version, at in self.versions.items():
            sent = session.player_versions.get(version)
            if sent is not None:
                self.stats.delivery_delay_ms.append((at - sent) * 1000.0)

    async def _receive(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                if isinstance(raw, bytes):
                    continue
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "state":
                    self.stats.states += 1
                    version = message.get("version")
                    # The first state is the snapshot sent on connect, not a broadcast: no delay to measure.
                    if self._first_state_seen and isinstance(version, int):
                        self.versions.setdefault(version, clock())
                    self._first_state_seen = True
                elif kind == "gesture":
                    self.stats.gestures += 1
                elif kind == "error":
                    self.stats.errors[str(message.get("code"))] += 1
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            if code not in (None, 1000, 1001, 1005):
                self.stats.errors[f"spectator_closed_{code}"] += 1
        except (json.JSONDecodeError, WebSocketException, OSError) as exc:
            self.stats.errors[f"spectator_receive_{type(exc).__name__}"] += 1


class PredictPlayer:
    """The seed's architecture: one `POST /predict` per frame, sequential, nothing dropped by the server.

    Like a seed web client, it sends the current frame at a tick and waits for the answer before the
    next one; ticks that pass while a request is running are skipped (the camera moved on), so a slow
    server shows up as a lower delivered frame rate, and each frame's latency is send -> response.
    """

    def __init__(self, source: FrameSource, *, fps: float, warmup_s: float = 1.0,
                 stats: PlayerStats | None = None) -> None:
        self.source = source
        self.period = 1.0 / fps
        self.warmup_s = warmup_s
        self.stats = stats or PlayerStats()

    async def run(self, http: httpx.AsyncClient, base_url: str, stop_at: float) -> None:
        stats = self.stats
        start = clock()
        next_tick = start
        index = 0
        counting_from: float | None = None  # `warmup_s` after the first response, as for Player
        stats.connected = True
        while True:
            now = await _wait_until(next_tick, clock)
            if now >= stop_at:
                break
            counted = counting_from is not None and now >= counting_from
            gesture = self.source.gesture_at(now - start)
            data = self.source.frame(gesture, index)
            index += 1
            try:
                response = await http.post(
                    f"{base_url}/predict", content=data, headers={"content-type": "image/jpeg"}, timeout=30.0
                )
            except httpx.HTTPError as exc:
                stats.errors[f"http_{type(exc).__name__}"] += 1
                response = None
            done = clock()
            if counted:
                stats.ticks += 1
                stats.frames_sent += 1
                stats.bytes_sent += len(data)
            if response is not None:
                stats.replies_total += 1
                if counting_from is None:
                    counting_from = done + self.warmup_s
                if response.status_code != 200:
                    stats.errors[f"http_{response.status_code}"] += 1
                elif counted:
                    body = response.json()
                    stats.frames_processed += 1
                    stats.frame_latency_ms.append((done - now) * 1000.0)
                    if body.get("hand"):
                        stats.hands += 1
                    if body.get("gesture") == gesture:
                        stats.recognised += 1
            next_tick += self.period
            while next_tick < done:  # ticks that passed during the request: those frames were never sent
                next_tick += self.period
                if counted and next_tick < stop_at:
                    stats.ticks += 1
                    stats.ticks_skipped += 1
        stats.measured_s = max(0.0, stop_at - counting_from) if counting_from is not None else 0.0


async def _wait_until(tick: float, clock: Callable[[], float]) -> float:
    """Sleep until the next frame tick (if it is still ahead) and return the clock's time."""
    now = clock()
    if tick > now:
        await asyncio.sleep(tick - now)
        now = clock()
    return now
