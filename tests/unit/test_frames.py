"""model.frames: size/magic/header checks before decoding, corrupt and truncated data, stats."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from model.frames import FrameError, decode_jpeg, frame_stats, read_jpeg_header
from tests.support.frames import blank_jpeg, corrupt_jpeg, encode_jpeg, load_rgb, truncated_jpeg

LIMITS = {"max_bytes": 512 * 1024, "max_width": 1920, "max_height": 1920}


def _decode(data: bytes, **overrides: int) -> np.ndarray:
    return decode_jpeg(data, **{**LIMITS, **overrides})


def _code(data: bytes, **overrides: int) -> str:
    with pytest.raises(FrameError) as caught:
        _decode(data, **overrides)
    return caught.value.code


def _with_sof_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the dimensions in the SOF0 header, leaving the pixels as they are."""
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


@pytest.fixture(scope="module")
def photo_jpeg(gestures_dir) -> bytes:
    return (gestures_dir / "like.jpg").read_bytes()


def test_decodes_a_real_photo_to_rgb(gestures_dir, photo_jpeg):
    rgb = _decode(photo_jpeg)
    expected = load_rgb(gestures_dir / "like.jpg")
    assert rgb.dtype == np.uint8 and rgb.shape == expected.shape
    assert np.array_equal(rgb, expected)


def test_channel_order_is_rgb():
    red = np.zeros((32, 48, 3), np.uint8)
    red[..., 0] = 255
    rgb = _decode(encode_jpeg(red, quality=95))
    assert rgb.shape == (32, 48, 3)
    assert rgb[..., 0].mean() > 240 and rgb[..., 2].mean() < 15


def test_header_dimensions_are_read_without_decoding(photo_jpeg):
    header = read_jpeg_header(photo_jpeg)
    assert (header.width, header.height) == (303, 303)
    header = read_jpeg_header(blank_jpeg(320, 240))
    assert (header.width, header.height) == (320, 240)


def test_empty_frame():
    assert _code(b"") == "empty_frame"


def test_too_large_is_refused_before_anything_else():
    assert _code(b"\x00" * 2000, max_bytes=1000) == "frame_too_large"


def test_not_a_jpeg():
    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    assert _code(png) == "not_jpeg"
    assert _code(b"hello world") == "not_jpeg"
    assert _code(b"\xff\xd8") == "not_jpeg"


def test_garbage_after_the_magic_is_corrupt(photo_jpeg):
    assert _code(corrupt_jpeg(photo_jpeg)) == "corrupt_jpeg"


@pytest.mark.parametrize("keep", [0.05, 0.5, 0.95])
def test_truncated_frame_is_corrupt(photo_jpeg, keep):
    assert _code(truncated_jpeg(photo_jpeg, keep)) == "corrupt_jpeg"


def test_damaged_scan_data_is_corrupt(photo_jpeg):
    # Keep headers and the end marker but replace the compressed data with marker-like junk.
    sos = photo_jpeg.index(b"\xff\xda")
    damaged = photo_jpeg[: sos + 20] + b"\xff\xd0\xff\x00" * 64 + b"\xff\xd9"
    # libjpeg may or may not refuse it; it must never raise anything but FrameError or return junk shape.
    try:
        rgb = _decode(damaged)
    except FrameError as exc:
        assert exc.code == "corrupt_jpeg"
    else:
        assert rgb.shape == (303, 303, 3)


def test_dimensions_over_the_limit_are_refused_from_the_header(photo_jpeg):
    assert _code(photo_jpeg, max_width=300) == "frame_dimensions"
    assert _code(photo_jpeg, max_height=200) == "frame_dimensions"
    # A small file that declares a huge image is refused before any pixel is allocated.
    bomb = _with_sof_size(photo_jpeg, 60000, 60000)
    assert len(bomb) == len(photo_jpeg)
    assert _code(bomb) == "frame_dimensions"


def test_zero_dimensions_are_refused(photo_jpeg):
    assert _code(_with_sof_size(photo_jpeg, 0, 303)) == "frame_dimensions"


def test_frame_error_codes_are_a_closed_set():
    with pytest.raises(ValueError):
        FrameError("whatever", "no")
    err = FrameError("not_jpeg", "msg")
    assert err.code == "not_jpeg" and err.message == "msg" and isinstance(err, ValueError)


def test_stats_brightness_contrast_and_sharpness():
    flat = np.full((240, 320, 3), 100, np.uint8)
    stats = frame_stats(flat, 1234)
    assert (stats.bytes, stats.width, stats.height) == (1234, 320, 240)
    assert stats.brightness == pytest.approx(100, abs=0.5)
    assert stats.contrast == pytest.approx(0, abs=0.01)
    assert stats.sharpness == pytest.approx(0, abs=0.01)

    checker = (np.indices((240, 320)).sum(axis=0) // 8 % 2 * 255).astype(np.uint8)
    sharp = np.repeat(checker[..., None], 3, axis=2)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 6)
    s_sharp, s_blur = frame_stats(sharp, 1), frame_stats(blurred, 1)
    assert s_sharp.contrast == pytest.approx(127.5, abs=1)
    assert s_sharp.sharpness > 10 * s_blur.sharpness > 0
    assert s_sharp.brightness == pytest.approx(127.5, abs=1)


def test_stats_of_a_real_photo(photo_jpeg):
    rgb = _decode(photo_jpeg)
    stats = frame_stats(rgb, len(photo_jpeg))
    assert 50 < stats.brightness < 250
    assert stats.contrast > 10
    assert stats.sharpness > 1


def test_video_like_frames_helper(gestures_dir):
    from tests.support.frames import jittered_frames, webcam_view

    photo = gestures_dir / "like.jpg"
    frames = jittered_frames(photo, 4, seed=3)
    assert frames == jittered_frames(photo, 4, seed=3)  # deterministic from the seed
    assert len(set(frames)) == 4  # every frame differs (shift, brightness, re-encoding)
    decoded = [_decode(f) for f in frames]
    assert all(d.shape == (303, 303, 3) for d in decoded)
    assert len({round(float(d.mean())) for d in decoded}) > 1
    view = webcam_view(load_rgb(photo))
    assert view.shape == (480, 640, 3)
    assert _decode(encode_jpeg(view)).shape == (480, 640, 3)
