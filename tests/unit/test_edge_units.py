"""Edge mode's pure parts: the `landmarks` message's validation and encoding, and the runtime's
install step (integrity check, unpacking only the listed files, atomically, with the licence)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from stream.protocol.client import (
    LandmarksMessage,
    ProtocolError,
    SeenHand,
    encode_landmarks,
    parse_client_message,
)
from stream.web.edge_assets import (
    AssetError,
    NpmPackage,
    check_integrity,
    installed_dir,
    is_installed,
    unpack,
)

POINTS = [[0.4 + i / 100, 0.5 - i / 100, -0.01 * i] for i in range(21)]


def _message(**changes: object) -> str:
    hand = {"points": POINTS, "handedness": "Right", "score": 0.9}
    body = {"type": "landmarks", "width": 640, "height": 480, "hand": hand} | changes
    return json.dumps(body)


def test_a_valid_message_parses_and_round_trips() -> None:
    parsed = parse_client_message(_message(), 4096)
    assert isinstance(parsed, LandmarksMessage)
    assert (parsed.width, parsed.height) == (640, 480)
    assert parsed.hand is not None and len(parsed.hand.points) == 21 and parsed.hand.handedness == "Right"
    again = parse_client_message(encode_landmarks(parsed.width, parsed.height, parsed.hand), 4096)
    assert isinstance(again, LandmarksMessage) and again.hand is not None
    assert (again.width, again.height, again.hand.handedness) == (640, 480, "Right")
    flat = [v for point in again.hand.points for v in point]
    assert flat == pytest.approx([v for point in POINTS for v in point], abs=1e-5)  # 5 decimals on the wire
    assert parse_client_message(_message(hand=None), 4096).hand is None


@pytest.mark.parametrize("bad", [
    {"hand": {"points": POINTS[:20], "handedness": "Right", "score": 0.9}},
    {"hand": {"points": [[0.5, 0.5]] * 21, "handedness": "Right", "score": 0.9}},
    {"hand": {"points": [[0.5, 0.5, 0.0]] * 20 + [[0.5, 2.0, 0.0]], "handedness": "Right", "score": 0.9}},
    {"hand": {"points": [[0.5, 0.5, 1e300]] * 21, "handedness": "Right", "score": 0.9}},
    {"hand": {"points": [[None, 0.5, 0.0]] * 21, "handedness": "Right", "score": 0.9}},
    {"hand": {"points": POINTS, "handedness": "Both", "score": 0.9}},
    {"hand": {"points": POINTS, "handedness": "Right", "score": -0.1}},
    {"hand": {"points": POINTS, "handedness": "Right"}},
    {"hand": "none"},
    {"width": 0},
    {"width": True},
    {"height": 100000},
])
def test_malformed_messages_are_bad_fields(bad: dict[str, object]) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(_message(**bad), 4096)
    assert caught.value.code == "bad_field"


def test_non_finite_numbers_are_refused() -> None:
    text = _message().replace("0.4", "NaN", 1)
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(text, 4096)
    assert caught.value.code == "bad_field"


@pytest.mark.parametrize("digits", ["9" * 400, "-" + "9" * 400])
@pytest.mark.parametrize("where", ["point", "score"])
def test_an_integer_too_long_for_a_float_is_a_bad_field(digits: str, where: str) -> None:
    """JSON allows thousands of digits; converting them to a float raised OverflowError, not an error
    code."""
    text = _message().replace("0.4", digits, 1) if where == "point" else _message().replace(
        '"score": 0.9', f'"score": {digits}').replace('"score":0.9', f'"score":{digits}')
    assert digits in text
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(text, 8192)
    assert caught.value.code == "bad_field" and "finite number" in caught.value.message


def test_valid_points_keep_their_values_in_order() -> None:
    points = [[round(0.01 * i, 2), round(0.02 * i, 2), round(-0.01 * i, 2)] for i in range(21)]
    points[3][0] = 1  # a whole number is a number
    message = parse_client_message(_message(hand={"points": points, "handedness": "Left", "score": 1}), 4096)
    assert message.hand is not None
    assert message.hand.points == tuple(tuple(float(v) for v in p) for p in points)
    assert all(type(v) is float for p in message.hand.points for v in p)


def test_a_message_fits_the_default_text_cap() -> None:
    worst = SeenHand(tuple((-0.123456, 1.234567, -0.987654) for _ in range(21)), "Right", 0.999999)
    assert len(encode_landmarks(8192, 8192, worst)) < 4096


# --- the install step -------------------------------------------------------------------------------
def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


PACKAGE = NpmPackage(name="@example/hands", version="1.0.0", integrity="", files=("hands.js", "model.bin"))


def test_the_integrity_hash_is_checked() -> None:
    data = _tarball({"package/hands.js": b"x"})
    check_integrity(data, _integrity(data))
    with pytest.raises(AssetError):
        check_integrity(data + b"!", _integrity(data))
    with pytest.raises(AssetError):
        check_integrity(data, "sha1-abc")


def test_only_the_listed_files_are_unpacked_with_the_licence(tmp_path: Path) -> None:
    data = _tarball({
        "package/hands.js": b"runtime",
        "package/model.bin": b"weights",
        "package/../../escape.js": b"no",  # a path outside the folder: never written
        "package/extra.txt": b"not listed",
    })
    target = installed_dir(tmp_path, PACKAGE)
    unpack(data, target, PACKAGE)
    assert sorted(p.name for p in target.iterdir()) == ["LICENSE", "hands.js", "model.bin"]
    assert (target / "hands.js").read_bytes() == b"runtime"
    assert b"Apache License" in (target / "LICENSE").read_bytes()
    assert is_installed(tmp_path, PACKAGE)
    assert not (tmp_path.parent / "escape.js").exists()


def test_a_package_missing_a_file_installs_nothing(tmp_path: Path) -> None:
    target = installed_dir(tmp_path, PACKAGE)
    with pytest.raises(AssetError, match=r"model\.bin"):
        unpack(_tarball({"package/hands.js": b"runtime"}), target, PACKAGE)
    assert not target.exists() and not is_installed(tmp_path, PACKAGE)
    assert list(tmp_path.iterdir()) == []
