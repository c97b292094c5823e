"""Strict parsing of client messages and the encoding of server messages."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maze import Direction
from stream.protocol import (
    CLIENT_TYPES,
    FrameReply,
    Limits,
    MoveMessage,
    NextLevelMessage,
    PingMessage,
    ProtocolError,
    RestartMessage,
    SchemeMessage,
    StateSnapshot,
    Welcome,
    encode,
    parse_client_message,
)
from stream.protocol.client import _nesting_depth, _within_depth

MAX = 4096


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type":"move","direction":"up"}', MoveMessage(Direction.UP)),
        ('{"direction":"left","type":"move"}', MoveMessage(Direction.LEFT)),
        ('{"type":"restart"}', RestartMessage()),
        ('{"type":"next_level"}', NextLevelMessage()),
        ('{"type":"scheme","scheme":"pointing"}', SchemeMessage("pointing")),
        ('{"type":"ping","t":1234.5}', PingMessage(1234.5)),
        ('{"type":"ping","t":-3}', PingMessage(-3)),
        (' \n{"type":"restart"}\t', RestartMessage()),
    ],
)
def test_valid_messages(text: str, expected: object) -> None:
    assert parse_client_message(text, MAX) == expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "bad_json"),
        ("{", "bad_json"),
        ("{'type': 'move'}", "bad_json"),
        ('{"type":"move","direction":"up"} trailing', "bad_json"),
        ("NaN", "bad_message"),
        ("null", "bad_message"),
        ('"move"', "bad_message"),
        ("[]", "bad_message"),
        ("{}", "bad_message"),
        ('{"type": 3}', "bad_message"),
        ('{"type": null}', "bad_message"),
        ('{"type":"MOVE","direction":"up"}', "unknown_type"),
        ('{"type":"state"}', "unknown_type"),
        ('{"type":"move"}', "bad_field"),
        ('{"type":"move","direction":"UP"}', "bad_field"),
        ('{"type":"move","direction":["up"]}', "bad_field"),
        ('{"type":"move","direction":"up","direction2":"down"}', "bad_field"),
        ('{"type":"restart","now":true}', "bad_field"),
        ('{"type":"scheme","scheme":"mind"}', "bad_field"),
        ('{"type":"ping"}', "bad_field"),
        ('{"type":"ping","t":"1"}', "bad_field"),
        ('{"type":"ping","t":true}', "bad_field"),
        ('{"type":"ping","t":1e999}', "bad_field"),
        ('{"type":"ping","t":NaN}', "bad_field"),
        ('{"type":"ping","t":Infinity}', "bad_field"),
        ('{"type":"ping","t":' + "9" * 400 + "}", "bad_field"),
        ('{"type":"ping","t":' + "[" * 50 + "]" * 50 + "}", "bad_json"),
        ('{"type":"move","direction":"' + "x" * MAX + '"}', "message_too_large"),
        ('{"type":"move","direction":"' + "é" * (MAX // 2) + '"}', "message_too_large"),
    ],
)
def test_invalid_messages_get_their_code(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as error:
        parse_client_message(text, MAX)
    assert error.value.code == code
    assert error.value.message and len(error.value.message) < 200


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    with pytest.raises(ProtocolError) as error:
        parse_client_message('{"type":"move","direction":"[[[[[[[[[[\\"{{{{{{{"}', MAX)
    assert error.value.code == "bad_field"


def test_size_limit_is_in_utf8_bytes() -> None:
    text = '{"type":"restart"}'
    assert parse_client_message(text, len(text)) == RestartMessage()
    with pytest.raises(ProtocolError):
        parse_client_message(text, len(text) - 1)


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_protocol_error(text: str) -> None:
    try:
        message = parse_client_message(text, MAX)
    except ProtocolError as error:
        assert error.code in {"bad_json", "bad_message", "unknown_type", "bad_field", "message_too_large"}
    else:
        assert message.type in CLIENT_TYPES


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from(["type", "direction", "scheme", "t", "x"]), json_values, max_size=4))
def test_any_json_object_parses_or_raises_protocol_error(data: dict[str, object]) -> None:
    try:
        message = parse_client_message(json.dumps(data), MAX)
    except ProtocolError:
        return
    assert data["type"] == message.type
    assert set(data) - {"type"} <= {"direction", "scheme", "t"}


def test_encode_is_compact_json_with_a_type() -> None:
    welcome = Welcome("player", "abc", "counting", Limits(512, 30.0), 1.5)
    text = encode(welcome)
    assert " " not in text
    assert json.loads(text) == {
        "type": "welcome",
        "role": "player",
        "session_id": "abc",
        "scheme": "counting",
        "limits": {"max_frame_bytes": 512, "max_fps": 30.0},
        "server_time": 1.5,
        "resumed": False,
    }
    frame = json.loads(encode(FrameReply(1, False, None, 0.0, None, 3.5, 0, None)))
    assert frame["type"] == "frame" and frame["landmarks"] is None and frame["command"] is None


def test_state_snapshot_encodes_each_variant_once() -> None:
    body = {"type": "state", "version": 3}
    snapshot = StateSnapshot(3, 1, False, body, {"width": 5, "height": 5, "cells": []})
    lean, full = snapshot.text(False), snapshot.text(True)
    assert "maze" not in json.loads(lean) and json.loads(full)["maze"]["width"] == 5
    assert snapshot.text(False) is lean and snapshot.text(True) is full  # cached, shared by connections
    changed = StateSnapshot(4, 2, True, {"type": "state", "version": 4}, {"width": 7})
    assert "maze" in json.loads(changed.text(False))  # a new maze always travels


_JSONISH = st.text(alphabet='[]{}"\\,:0123456789.-eEnu ab', max_size=80)


@given(_JSONISH)
def test_the_quick_depth_check_never_lets_deeper_json_through(text: str) -> None:
    # The fast path may answer "within the limit" only where the exact count agrees, or where the text
    # is not JSON at all (an invalid escape), which json.loads then refuses before any deep nesting.
    if _within_depth(text, 4) and _nesting_depth(text) > 4:
        with pytest.raises(ValueError):
            json.loads(text)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6, 12])
def test_the_quick_depth_check_counts_nesting(depth: int) -> None:
    text = '{"a":' + "[" * (depth - 1) + '"]]]]{{{{"' + "]" * (depth - 1) + "}"
    assert _nesting_depth(text) == depth
    assert _within_depth(text, 4) is (depth <= 4)
