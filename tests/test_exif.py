"""The EXIF capture-date reader: real JPEGs with an EXIF block built here, and garbage that must read as no date."""

from __future__ import annotations

import random
import struct
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest

from pixsearch.exif import TakenAt, exif_date, iso, taken_at


def tiff_block(tags: dict[int, bytes], endian: str = "<", exif_tags: dict[int, bytes] | None = None) -> bytes:
    """A TIFF structure: IFD0 with ASCII *tags*, plus an Exif IFD (pointer 0x8769) with *exif_tags*."""
    order = b"II" if endian == "<" else b"MM"
    ifd0 = dict(tags)
    ifd0_entries = len(ifd0) + (1 if exif_tags is not None else 0)
    ifd0_size = 2 + 12 * ifd0_entries + 4
    exif_offset = 8 + ifd0_size
    exif_size = 2 + 12 * len(exif_tags or {}) + 4
    data_offset = exif_offset + (exif_size if exif_tags is not None else 0)
    data = b""

    def entry(tag: int, value: bytes) -> bytes:
        nonlocal data
        if len(value) <= 4:
            return struct.pack(endian + "HHI", tag, 2, len(value)) + value.ljust(4, b"\x00")
        pointer = data_offset + len(data)
        data += value
        return struct.pack(endian + "HHII", tag, 2, len(value), pointer)

    out = struct.pack(endian + "2sHI", order, 42, 8)
    ifd0_bytes = struct.pack(endian + "H", ifd0_entries)
    for tag, value in sorted(ifd0.items()):
        ifd0_bytes += entry(tag, value)
    if exif_tags is not None:
        ifd0_bytes += struct.pack(endian + "HHII", 0x8769, 4, 1, exif_offset)
    out += ifd0_bytes + b"\x00" * 4
    if exif_tags is not None:
        exif_bytes = struct.pack(endian + "H", len(exif_tags))
        for tag, value in sorted(exif_tags.items()):
            exif_bytes += entry(tag, value)
        out += exif_bytes + b"\x00" * 4
    assert len(out) == data_offset
    return out + data


def jpeg_with_exif(tiff: bytes) -> bytes:
    """A cv2-encoded JPEG with an APP1 Exif segment holding *tiff* right after SOI."""
    ok, encoded = cv2.imencode(".jpg", np.full((16, 24, 3), 128, np.uint8))
    assert ok
    jpeg = encoded.tobytes()
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def epoch(*parts: int, offset_hours: int = 0) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp() - offset_hours * 3600  # type: ignore[misc]


ORIGINAL, OFFSET_ORIGINAL, DATETIME = 0x9003, 0x9011, 0x0132


@pytest.mark.parametrize("endian", ["<", ">"])
def test_date_time_original_with_its_offset_is_the_exact_instant(endian):
    tiff = tiff_block({DATETIME: b"2020:01:01 00:00:00\x00"}, endian,
                      {ORIGINAL: b"2024:05:01 12:30:15\x00", OFFSET_ORIGINAL: b"+02:00\x00"})
    got = exif_date(jpeg_with_exif(tiff))
    assert got == TakenAt(epoch(2024, 5, 1, 12, 30, 15, offset_hours=2), "exif")
    assert iso(got.timestamp, got.source) == "2024-05-01T10:30:15+00:00"


def test_without_an_offset_the_wall_clock_time_is_kept_and_said_to_be_local():
    got = exif_date(jpeg_with_exif(tiff_block({}, "<", {ORIGINAL: b"2023:12:24 18:00:00\x00"})))
    assert got == TakenAt(epoch(2023, 12, 24, 18, 0, 0), "exif-local")
    assert iso(got.timestamp, got.source) == "2023-12-24T18:00:00"


def test_ifd0_date_time_when_there_is_no_original():
    got = exif_date(jpeg_with_exif(tiff_block({DATETIME: b"2019:07:04 09:08:07\x00"})))
    assert got == TakenAt(epoch(2019, 7, 4, 9, 8, 7), "exif-local")


def test_no_exif_or_a_blank_date_falls_back_to_mtime():
    _ok, plain = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    assert exif_date(plain.tobytes()) is None
    assert taken_at(plain.tobytes(), 1234.5) == TakenAt(1234.5, "mtime")
    blank = jpeg_with_exif(tiff_block({}, "<", {ORIGINAL: b"0000:00:00 00:00:00\x00"}))
    assert taken_at(blank, 99.0) == TakenAt(99.0, "mtime")
    _ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    assert taken_at(png.tobytes(), 7.0) == TakenAt(7.0, "mtime")


def test_garbage_and_truncated_inputs_read_as_no_date():
    good = jpeg_with_exif(tiff_block({DATETIME: b"2019:07:04 09:08:07\x00"}, "<",
                                     {ORIGINAL: b"2024:05:01 12:30:15\x00", OFFSET_ORIGINAL: b"-07:30\x00"}))
    assert exif_date(good) == TakenAt(epoch(2024, 5, 1, 12, 30, 15) + 7.5 * 3600, "exif")
    rng = random.Random(15)
    for cut in range(len(good)):
        result = exif_date(good[:cut])
        assert result is None or isinstance(result, TakenAt)
    for _ in range(3000):
        data = bytearray(good)
        for _flip in range(rng.randint(1, 8)):
            data[rng.randrange(2, 200)] = rng.randrange(256)
        result = exif_date(bytes(data))
        assert result is None or isinstance(result, TakenAt)
    for _ in range(500):
        noise = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        for data in (noise, b"\xff\xd8" + noise, b"\xff\xd8\xff\xe1\x01\x00Exif\x00\x00II*\x00" + noise):
            result = exif_date(data)
            assert result is None or isinstance(result, TakenAt)
    huge_count = b"II*\x00\x08\x00\x00\x00\xff\xff" + b"\x00" * 40
    assert exif_date(jpeg_with_exif(huge_count)) is None
