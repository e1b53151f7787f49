"""When a photo was taken: EXIF DateTimeOriginal (with its offset where present), else the file's mtime.

OpenCV exposes no EXIF tags, so the TIFF structure of the EXIF block (found by
``images.exif_block`` in JPEG, PNG, WebP and TIFF files) is walked here: IFD0, then the
Exif IFD it points to (tag 0x8769) for DateTimeOriginal (0x9003) and OffsetTimeOriginal
(0x9011); IFD0's DateTime (0x0132, with OffsetTime 0x9010) when there is no original.
The bytes are untrusted: every read is bounds-checked, entry counts are capped, and
anything malformed reads as "no date" rather than an error.

``source`` says what the timestamp means:

* ``"exif"``: the camera recorded its UTC offset; the timestamp is the exact instant.
* ``"exif-local"``: the camera recorded only its wall-clock time; the timestamp is that
  wall-clock time read as if it were UTC (shown without an offset), which keeps photos of
  one camera in order but may be hours off from the instant.
* ``"mtime"``: no usable EXIF date; the file's modification time.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from .images import exif_block

MAX_ENTRIES = 512
"""More entries than any real IFD holds; a larger count is garbage and is read only this far."""
_EXIF_IFD, _DATETIME, _ORIGINAL, _OFFSET, _OFFSET_ORIGINAL = 0x8769, 0x0132, 0x9003, 0x9010, 0x9011
_ASCII, _LONG = 2, 4
_DATE = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_ZONE = re.compile(r"^([+-])(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class TakenAt:
    """A capture time: UTC epoch seconds and where it came from (``exif``, ``exif-local`` or ``mtime``)."""

    timestamp: float
    source: str


def taken_at(data: bytes, mtime: float) -> TakenAt:
    """When the image in *data* was taken; *mtime* (source ``"mtime"``) when its EXIF does not say."""
    found = exif_date(data)
    return found if found is not None else TakenAt(float(mtime), "mtime")


def exif_date(data: bytes) -> TakenAt | None:
    """The EXIF capture date of an encoded image, or None when it has no usable one."""
    block = exif_block(data)
    if not block:
        return None
    try:
        return _tiff_date(block)
    except struct.error:  # a pointer or count past the end that the checks below did not catch
        return None


def _tiff_date(tiff: bytes) -> TakenAt | None:
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    endian = "<" if tiff[:2] == b"II" else ">"
    (ifd0,) = struct.unpack_from(endian + "I", tiff, 4)
    tags0 = _entries(tiff, endian, ifd0)
    exif = {}
    pointer = tags0.get(_EXIF_IFD)
    if pointer is not None and pointer[0] == _LONG and pointer[1] == 1:
        (offset,) = struct.unpack_from(endian + "I", tiff, pointer[2])
        if offset != ifd0:
            exif = _entries(tiff, endian, offset)
    for date_tag, zone_tag, tags in ((_ORIGINAL, _OFFSET_ORIGINAL, exif), (_DATETIME, _OFFSET, tags0 | exif)):
        text = _ascii(tiff, endian, tags.get(date_tag))
        moment = _parse(text, _ascii(tiff, endian, exif.get(zone_tag))) if text else None
        if moment is not None:
            return moment
    return None


def _entries(tiff: bytes, endian: str, ifd: int) -> dict[int, tuple[int, int, int]]:
    """Tag -> (type, count, offset of the 4-byte value field) of the IFD at *ifd*; {} when out of bounds."""
    if ifd + 2 > len(tiff):
        return {}
    (count,) = struct.unpack_from(endian + "H", tiff, ifd)
    out: dict[int, tuple[int, int, int]] = {}
    for entry in range(min(count, MAX_ENTRIES)):
        offset = ifd + 2 + 12 * entry
        if offset + 12 > len(tiff):
            break
        tag, kind, number = struct.unpack_from(endian + "HHI", tiff, offset)
        out.setdefault(tag, (kind, number, offset + 8))
    return out


def _ascii(tiff: bytes, endian: str, entry: tuple[int, int, int] | None) -> str:
    """An ASCII tag's text (inline when it fits in 4 bytes), or "" when absent, not ASCII or out of bounds."""
    if entry is None or entry[0] != _ASCII or not 0 < entry[1] <= 64:
        return ""
    _kind, count, field = entry
    start = field if count <= 4 else struct.unpack_from(endian + "I", tiff, field)[0]
    if start + count > len(tiff):
        return ""
    return tiff[start:start + count].split(b"\x00", 1)[0].decode("ascii", "replace").strip()


def _parse(text: str, zone: str) -> TakenAt | None:
    """"YYYY:MM:DD HH:MM:SS" (and "+HH:MM") as a TakenAt; None for blanks like "0000:00:00 00:00:00"."""
    match = _DATE.match(text)
    if match is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        naive = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    if not 1800 <= naive.year <= 9999:
        return None
    offset = _ZONE.match(zone)
    if offset is None:
        return TakenAt(naive.replace(tzinfo=UTC).timestamp(), "exif-local")
    sign, hours, minutes = offset.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14):
        return TakenAt(naive.replace(tzinfo=UTC).timestamp(), "exif-local")
    zone_info = timezone(-delta if sign == "-" else delta)
    return TakenAt(naive.replace(tzinfo=zone_info).timestamp(), "exif")


def iso(timestamp: float, source: str) -> str:
    """How results show a capture time: with its UTC offset, except a wall-clock ``exif-local`` one."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    if source == "exif-local":
        return moment.replace(tzinfo=None).isoformat(timespec="seconds")
    return moment.isoformat(timespec="seconds")
