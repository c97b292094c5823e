"""JPEG frames from the network: validated cheaply first, then decoded to RGB, plus image-quality stats.

Frames come from untrusted clients, so every check that can run before the expensive decode does:
the byte size, the JPEG magic number, the dimensions read from the SOF header (a 50 kB file can
declare a 60000x60000 image; we refuse it without allocating the pixels), and the decoding process:
webcam frames from browsers are baseline (or extended sequential) Huffman JPEGs with one scan per
component at most, so progressive, lossless and arithmetic-coded files, files with more than
`MAX_SCANS` scans and files with more than `MAX_SEGMENTS` header segments are refused with
`unsupported_jpeg` before the decoder runs (a 500 kB progressive file with thousands of scans costs
the decoder seconds of CPU). Each side must be at least `MIN_SIDE` pixels (`frame_dimensions`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FRAME_ERROR_CODES = (
    "empty_frame",
    "frame_too_large",
    "not_jpeg",
    "corrupt_jpeg",
    "frame_dimensions",
    "unsupported_jpeg",
)

_SOI = b"\xff\xd8\xff"
_EOI = b"\xff\xd9"
# Start-of-frame markers carry the dimensions: C0..CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone (no length field): TEM and the restart markers.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_SOS = 0xDA
_SOS_BYTES = b"\xff\xda"
# Sequential Huffman (baseline SOF0, extended SOF1): what browsers' canvas.toBlob and webcams produce.
_SEQUENTIAL_SOF = frozenset({0xC0, 0xC1})
MAX_SCANS = 4  # a sequential JPEG has at most one scan per component (4 components at most)
MAX_SEGMENTS = 64  # header segments before the first scan (tables, APPn); webcams write under 15
MIN_SIDE = 16  # pixels; thinner images cannot hold a hand and break image statistics
_SHARPNESS_SIDE = 160  # sharpness is measured on a grey image at most this wide/high (cheap, stable)


class FrameError(ValueError):
    """A frame that cannot be used; `code` is one of FRAME_ERROR_CODES (sent to the client as is)."""

    def __init__(self, code: str, message: str) -> None:
        if code not in FRAME_ERROR_CODES:
            raise ValueError(f"unknown frame error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class JpegHeader:
    width: int
    height: int
    scan_offset: int  # where the first SOS segment starts (entropy-coded data follows it)


@dataclass(frozen=True)
class FrameStats:
    bytes: int
    width: int
    height: int
    brightness: float  # mean luma, 0..255
    contrast: float  # luma standard deviation
    sharpness: float  # variance of the Laplacian of a downscaled grey image (low = blurred)


def read_jpeg_header(data: bytes) -> JpegHeader:
    """Walk the marker segments up to the first scan; raises FrameError(corrupt_jpeg) if malformed."""
    size = len(data)
    pos = 2
    width = height = None
    segments = 0
    while pos < size:
        if data[pos] != 0xFF:
            raise FrameError("corrupt_jpeg", f"expected a JPEG marker at byte {pos}")
        while pos < size and data[pos] == 0xFF:  # fill bytes may pad markers
            pos += 1
        if pos >= size:
            break
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if pos + 2 > size:
            break
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > size:
            break
        segments += 1
        if segments > MAX_SEGMENTS:
            raise FrameError("unsupported_jpeg", f"more than {MAX_SEGMENTS} JPEG header segments")
        if marker in _SOF_MARKERS:
            if marker not in _SEQUENTIAL_SOF:
                raise FrameError(
                    "unsupported_jpeg", "only baseline (sequential) JPEG frames are accepted, not progressive"
                )
            if length < 7:
                raise FrameError("corrupt_jpeg", "JPEG frame header is too short")
            height = int.from_bytes(data[pos + 3 : pos + 5], "big")
            width = int.from_bytes(data[pos + 5 : pos + 7], "big")
        elif marker == _SOS:
            if width is None or height is None:
                raise FrameError("corrupt_jpeg", "JPEG scan before any frame header")
            return JpegHeader(width=width, height=height, scan_offset=pos - 2)
        elif marker == 0xD9:
            break
        pos += length
    raise FrameError("corrupt_jpeg", "JPEG data ends before the image data")


def decode_jpeg(data: bytes, max_bytes: int, max_width: int, max_height: int) -> np.ndarray:
    """Validate and decode one JPEG frame to an (H, W, 3) uint8 RGB array, or raise FrameError."""
    if not data:
        raise FrameError("empty_frame", "the frame is empty")
    if len(data) > max_bytes:
        raise FrameError("frame_too_large", f"frame is {len(data)} bytes; the limit is {max_bytes}")
    if not data.startswith(_SOI):
        raise FrameError("not_jpeg", "the frame is not a JPEG image (expected bytes FF D8 FF)")
    header = read_jpeg_header(data)
    check_dimensions(header.width, header.height, max_width, max_height)
    # In entropy-coded data every FF byte is followed by 00 or a restart marker, so an EOI after the
    # scan start is the real end of the image; without it the file was cut off (libjpeg would only
    # warn and fill the missing rows with grey).
    if data.find(_EOI, header.scan_offset) < 0:
        raise FrameError("corrupt_jpeg", "the JPEG data is truncated (no end-of-image marker)")
    # Entropy-coded data never holds FF DA (an FF there is followed by 00 or a restart marker), so
    # this counts the scans exactly, in C, without decoding anything.
    if data.count(_SOS_BYTES, header.scan_offset) > MAX_SCANS:
        raise FrameError("unsupported_jpeg", f"the JPEG has more than {MAX_SCANS} scans")
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise FrameError("corrupt_jpeg", "the JPEG data could not be decoded")
    # EXIF orientation may rotate the image: check the decoded size too.
    check_dimensions(bgr.shape[1], bgr.shape[0], max_width, max_height)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_dimensions(width: int, height: int, max_width: int, max_height: int) -> None:
    if width <= 0 or height <= 0:
        raise FrameError("frame_dimensions", f"frame has an empty size ({width}x{height})")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise FrameError(
            "frame_dimensions", f"frame is {width}x{height}; each side must be at least {MIN_SIDE} px"
        )
    if width > max_width or height > max_height:
        raise FrameError(
            "frame_dimensions", f"frame is {width}x{height}; the limit is {max_width}x{max_height}"
        )


def frame_stats(rgb: np.ndarray, nbytes: int) -> FrameStats:
    """Brightness, contrast and sharpness of a decoded frame (about 0.3 ms at 640x480)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    height, width = grey.shape
    mean, std = cv2.meanStdDev(grey)
    scale = _SHARPNESS_SIDE / max(width, height)
    if scale < 1:  # explicit target size: a very thin image must not round down to 0 px
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    else:
        small = grey
    laplacian = cv2.Laplacian(small, cv2.CV_32F)
    return FrameStats(
        bytes=nbytes,
        width=width,
        height=height,
        brightness=float(mean[0, 0]),
        contrast=float(std[0, 0]),
        sharpness=float(laplacian.var()),
    )
