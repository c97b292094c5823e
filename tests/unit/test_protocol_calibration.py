"""Calibration messages: strict parsing like every other client message."""

from __future__ import annotations

import json

import pytest

from stream.protocol import (
    CalibrateMessage,
    CalibrationResetMessage,
    CalibrationStatus,
    DonateMessage,
    ProtocolError,
    parse_client_message,
)


def parse(obj: object):
    return parse_client_message(json.dumps(obj), 4096)


def test_valid_calibration_messages():
    assert parse({"type": "calibrate", "gesture": "two_up"}) == CalibrateMessage("two_up")
    assert parse({"type": "calibrate", "gesture": None}) == CalibrateMessage(None)
    assert parse({"type": "calibration_reset"}) == CalibrationResetMessage()
    assert parse({"type": "donate", "donate": True}) == DonateMessage(True)


@pytest.mark.parametrize("message", [
    {"type": "calibrate"},
    {"type": "calibrate", "gesture": "One"},
    {"type": "calibrate", "gesture": "x" * 33},
    {"type": "calibrate", "gesture": 3},
    {"type": "calibrate", "gesture": "one", "extra": 1},
    {"type": "donate", "donate": "yes"},
    {"type": "donate", "donate": 1},
    {"type": "calibration_reset", "all": True},
])
def test_invalid_calibration_messages_are_refused(message):
    with pytest.raises(ProtocolError) as err:
        parse(message)
    assert err.value.code == "bad_field"


def test_status_reply_shape():
    assert CalibrationStatus("one", {"one": 3}, False).to_dict() == {
        "type": "calibration", "recording": "one", "samples": {"one": 3}, "donate": False}
