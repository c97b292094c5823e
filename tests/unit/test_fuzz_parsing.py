"""Fuzzing the two parsers that see untrusted bytes: only the documented exceptions may ever escape.

`stream.protocol.parse_client_message` may raise `ProtocolError` (and nothing else) and
`model.frames.decode_jpeg` may raise `FrameError` (and nothing else), whatever they are fed:
arbitrary text and bytes, deep nesting, huge numbers, and real JPEG photos with random damage.
Hypothesis runs a fixed number of examples (no deadline: this asserts behaviour, not timing).
"""

from __future__ import annotations

import json
import struct
from functools import cache

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from model.frames import FRAME_ERROR_CODES, FrameError, decode_jpeg
from stream.protocol import (
    BAD_FIELD,
    BAD_JSON,
    BAD_MESSAGE,
    MESSAGE_TOO_LARGE,
    UNKNOWN_TYPE,
    MoveMessage,
    NextLevelMessage,
    PingMessage,
    ProtocolError,
    RestartMessage,
    SchemeMessage,
    parse_client_message,
)
from tests.support.paths import GESTURES_DIR, require_path

MAX_TEXT = 4096
MAX_FRAME = 512 * 1024
MAX_W = MAX_H = 1920
PARSE_CODES = {BAD_JSON, BAD_MESSAGE, UNKNOWN_TYPE, BAD_FIELD, MESSAGE_TOO_LARGE}
MESSAGE_TYPES = (MoveMessage, RestartMessage, NextLevelMessage, SchemeMessage, PingMessage)

fuzz = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse_outcome(text: str, max_bytes: int = MAX_TEXT) -> object:
    """The parsed message, or the ProtocolError; any other exception fails the test."""
    try:
        message = parse_client_message(text, max_bytes)
    except ProtocolError as error:
        assert error.code in PARSE_CODES, error.code
        assert isinstance(error.message, str) and error.message
        return error
    assert isinstance(message, MESSAGE_TYPES)
    return message


# --- text messages ----------------------------------------------------------------------------
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
message_types = st.sampled_from(
    ["move", "restart", "next_level", "scheme", "ping", "Move", "", "pong", "state"]
)
field_names = st.sampled_from(["type", "direction", "scheme", "t", "extra", "__proto__", "seq"])
plausible_messages = st.dictionaries(field_names, json_values, max_size=4).flatmap(
    lambda d: st.builds(lambda kind: {**d, "type": kind}, message_types | json_values)
)


@fuzz
@given(st.text(max_size=600))
@example("")
@example("\x00")
@example("\ud800")  # a lone surrogate (websockets never delivers one, but parse must not care)
@example("NaN")
@example('{"type":"ping","t":NaN}')
@example('{"type":"ping","t":1e999}')
@example('{"type":"ping","t":' + "9" * 4000 + "}")
@example('{"type":"move","direction":"up"}{"type":"move"}')
@example("]]]]]]]]]]" + "[" * 50)
def test_arbitrary_text_only_raises_protocol_error(text: str) -> None:
    parse_outcome(text)


@fuzz
@given(plausible_messages)
def test_plausible_json_objects_only_raise_protocol_error(message: dict) -> None:
    text = json.dumps(message, allow_nan=True)
    outcome = parse_outcome(text, max_bytes=1 << 20)
    if isinstance(outcome, ProtocolError):
        return
    # Anything accepted must match the strict schema exactly.
    assert set(message) == {"type", *getattr(type(outcome), "__dataclass_fields__", {})}
    assert message["type"] == outcome.type


@fuzz
@given(st.integers(min_value=1, max_value=3000), st.sampled_from("[{"), st.booleans())
def test_deeply_nested_json_is_refused_not_recursed(depth: int, opener: str, closed: bool) -> None:
    closer = "]" if opener == "[" else "}"
    inner = '"a":1' if opener == "{" else "1"
    body = (opener if opener == "[" else '{"k":') * depth
    text = body + inner + (closer * depth if closed else "")
    if opener == "{":
        text = '{"k":' * depth + "1" + "}" * (depth if closed else 0)
    outcome = parse_outcome('{"type":"ping","t":' + text + "}", max_bytes=1 << 20)
    assert isinstance(outcome, ProtocolError)
    assert outcome.code in {BAD_JSON, BAD_FIELD}


def test_very_deep_nesting_gets_bad_json_without_recursion_error() -> None:
    for opener in "[{":
        text = (opener if opener == "[" else '{"a":') * 200_000
        outcome = parse_outcome(text, max_bytes=1 << 22)
        assert isinstance(outcome, ProtocolError) and outcome.code == BAD_JSON


@fuzz
@given(st.text(min_size=1, max_size=50), st.integers(min_value=0, max_value=200))
def test_size_limit_is_checked_in_utf8_bytes(chunk: str, max_bytes: int) -> None:
    text = json.dumps({"type": "ping", "t": 1, "pad": chunk})
    outcome = parse_outcome(text, max_bytes=max_bytes)
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        assert isinstance(outcome, ProtocolError) and outcome.code == MESSAGE_TOO_LARGE
    else:
        assert isinstance(outcome, ProtocolError) and outcome.code == BAD_FIELD  # "pad" is not a field


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("1e400", BAD_FIELD),  # json.loads gives inf
        ("-1e400", BAD_FIELD),
        ("9" * 4000, BAD_FIELD),  # a (huge) int: beyond 2**53 it is not exact in JavaScript
        ("-" + "9" * 4000, BAD_FIELD),
        ("1" + "0" * 300, BAD_FIELD),
        (str(2**53 + 1), BAD_FIELD),
        ("9" * 5000, BAD_JSON),  # above Python's int-parsing digit limit: json.loads refuses it
        (str(2**53), None),
        (str(-(2**53)), None),
        ("1e300", None),
        ("0.0000001", None),
        ("-0", None),
    ],
)
def test_huge_and_odd_numbers(number: str, code: str | None) -> None:
    outcome = parse_outcome('{"type":"ping","t":' + number + "}", max_bytes=1 << 16)
    if code is None:
        assert isinstance(outcome, PingMessage) and outcome.t == json.loads(number)
    else:
        assert isinstance(outcome, ProtocolError) and outcome.code == code, outcome


@fuzz
@given(
    st.sampled_from(["up", "down", "left", "right"]),
    st.sampled_from(["counting", "pointing"]),
    st.floats(allow_nan=False, allow_infinity=False) | st.integers(min_value=-(2**53), max_value=2**53),
)
def test_valid_messages_always_parse(direction: str, scheme: str, t: float) -> None:
    assert parse_outcome(json.dumps({"type": "move", "direction": direction})).direction.value == direction
    assert parse_outcome(json.dumps({"direction": direction, "type": "move"})).direction.value == direction
    assert parse_outcome(json.dumps({"type": "scheme", "scheme": scheme})).scheme == scheme
    assert parse_outcome(json.dumps({"type": "ping", "t": t})).t == t
    assert isinstance(parse_outcome('{"type":"restart"}'), RestartMessage)
    assert isinstance(parse_outcome('  {"type" : "next_level"}\n'), NextLevelMessage)


# --- binary frames ----------------------------------------------------------------------------
@cache
def real_jpegs() -> tuple[bytes, ...]:
    paths = sorted(require_path(GESTURES_DIR).glob("*.jpg"))
    assert paths, "no gesture photos"
    # Re-encode small so thousands of decodes stay quick; baseline, like webcam frames (progressive
    # files are refused before decoding: tests/unit/test_hardening_units.py), one with restart markers.
    out = []
    for i, path in enumerate(paths[:4]):
        image = cv2.imread(str(path))
        small = cv2.resize(image, (96, 96), interpolation=cv2.INTER_AREA)
        params = [cv2.IMWRITE_JPEG_QUALITY, 80, cv2.IMWRITE_JPEG_RST_INTERVAL, 4 * int(i == 3)]
        ok, buf = cv2.imencode(".jpg", small, params)
        assert ok
        out.append(buf.tobytes())
    out.append(paths[0].read_bytes())  # one untouched original
    return tuple(out)


def decode_outcome(data: bytes, max_bytes: int = MAX_FRAME) -> object:
    try:
        rgb = decode_jpeg(data, max_bytes, MAX_W, MAX_H)
    except FrameError as error:
        assert error.code in FRAME_ERROR_CODES, error.code
        return error
    assert isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert 0 < rgb.shape[0] <= MAX_H and 0 < rgb.shape[1] <= MAX_W
    return rgb


@fuzz
@given(st.binary(max_size=2048))
@example(b"")
@example(b"\xff\xd8")
@example(b"\xff\xd8\xff")
@example(b"\xff\xd8\xff\xd9")
@example(b"\xff\xd8\xff\xda\x00\x02")
@example(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
def test_arbitrary_bytes_only_raise_frame_error(data: bytes) -> None:
    outcome = decode_outcome(data)
    if not data:
        assert isinstance(outcome, FrameError) and outcome.code == "empty_frame"
    elif not data.startswith(b"\xff\xd8\xff"):
        assert isinstance(outcome, FrameError) and outcome.code == "not_jpeg"


@fuzz
@given(st.binary(min_size=1, max_size=4096))
def test_arbitrary_bytes_after_jpeg_magic(tail: bytes) -> None:
    decode_outcome(b"\xff\xd8\xff" + tail)


mutations = st.lists(
    st.tuples(st.sampled_from(["flip", "set", "delete", "insert", "truncate"]), st.integers(0, 1 << 30),
              st.integers(0, 255)),
    min_size=1,
    max_size=8,
)


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, position, value in ops:
        if not buf:
            break
        i = position % len(buf)
        if op == "flip":
            buf[i] ^= 1 << (value % 8)
        elif op == "set":
            buf[i] = value
        elif op == "delete":
            del buf[i : i + 1 + value % 16]
        elif op == "insert":
            buf[i:i] = bytes([value]) * (1 + value % 8)
        else:
            del buf[i:]
    return bytes(buf)


@fuzz
@given(st.integers(min_value=0, max_value=4), mutations)
def test_mutated_real_jpegs_only_raise_frame_error(index: int, ops: list[tuple[str, int, int]]) -> None:
    data = real_jpegs()[index]
    damaged = mutate(data, ops)
    assume(damaged != data)
    decode_outcome(damaged)


@fuzz
@given(st.integers(min_value=0, max_value=4), st.integers(min_value=0))
def test_truncated_real_jpegs_are_refused(index: int, cut: int) -> None:
    data = real_jpegs()[index]
    # Cut anywhere before the end-of-image marker: the image is incomplete and must be refused.
    truncated = data[: cut % (len(data) - 2)]
    outcome = decode_outcome(truncated)
    assert isinstance(outcome, FrameError)
    assert outcome.code in {"empty_frame", "not_jpeg", "corrupt_jpeg"}


def _with_dimensions(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the SOF header's dimensions (the pixels stay those of the original)."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]
    raise AssertionError("no SOF marker")


@fuzz
@given(st.integers(min_value=0, max_value=4), st.integers(0, 65535), st.integers(0, 65535))
def test_declared_dimensions_are_checked_before_decoding(index: int, width: int, height: int) -> None:
    outcome = decode_outcome(_with_dimensions(real_jpegs()[index], width, height))
    if width == 0 or height == 0 or width > MAX_W or height > MAX_H:
        assert isinstance(outcome, FrameError) and outcome.code == "frame_dimensions"


@pytest.mark.parametrize("index", range(5))
def test_undamaged_real_jpegs_decode(index: int) -> None:
    rgb = decode_outcome(real_jpegs()[index])
    assert isinstance(rgb, np.ndarray)


def test_oversized_frame_refused_before_looking_at_it() -> None:
    outcome = decode_outcome(b"\xff\xd8\xff" + b"\x00" * (MAX_FRAME + 1))
    assert isinstance(outcome, FrameError) and outcome.code == "frame_too_large"
    outcome = decode_outcome(real_jpegs()[0], max_bytes=len(real_jpegs()[0]) - 1)
    assert isinstance(outcome, FrameError) and outcome.code == "frame_too_large"
