"""Turn image files into pixels: read, decode, orient, convert to 8-bit RGB (and encode thumbnails).

What a model then does with the pixels (resize, crop, normalise) is the model's own
business and lives in ``models/preprocess.py``.

Decoding goes through OpenCV from bytes (``cv2.imdecode``), so paths with any
characters work and a file is read exactly once (the same bytes are hashed).
EXIF orientation is read here rather than by OpenCV, because OpenCV ignores it
whenever alpha or 16-bit data is requested; one code path orients every format.
"""

from __future__ import annotations

import functools
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import PixsearchError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif"}
)

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


class ImageError(PixsearchError):
    """A file could not be used as an image. ``reason`` is short and says what is wrong.

    ``unreadable``: the bytes could not be read at all (permissions, I/O), which says
    nothing about the image itself -- unlike a corrupt or non-image file.
    """

    def __init__(self, reason: str, unreadable: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.unreadable = unreadable


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray
    """H x W x 3 uint8, upright. May be a reduced-resolution decode of a large JPEG."""
    width: int
    """Width of the full-resolution, upright image."""
    height: int


def sniff_format(data: bytes) -> str | None:
    """The image format named by the file's magic bytes, or None."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def read_file(path: Path, max_bytes: int) -> bytes:
    """Read a whole regular file, refusing empty, oversized and special ones with a reason a user can act on.

    The file is opened with O_NONBLOCK (a FIFO or device never blocks the open) and checked on
    the open descriptor, so a file swapped for a FIFO after a scan is refused, never read; at
    most *max_bytes* are read even if the file grows meanwhile.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError as exc:
        raise ImageError("permission denied: check the file's read permission", unreadable=True) from exc
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or exc}", unreadable=True) from exc
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ImageError("is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise ImageError("not a regular file (a device, FIFO or socket)")
        if info.st_size == 0:
            raise ImageError("empty file (0 bytes)")
        if info.st_size > max_bytes:
            raise ImageError(f"file too large ({info.st_size / 2**20:.0f} MiB > max_file_bytes "
                             f"{max_bytes / 2**20:.0f} MiB)")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or exc}", unreadable=True) from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ImageError(f"file too large (grew past max_file_bytes {max_bytes / 2**20:.0f} MiB while read)")
    return data


# ----------------------------------------------------------------------------- headers


def _tiff_orientation(tiff: bytes) -> int:
    """Orientation tag (0x0112) of IFD0 in a TIFF-structured EXIF block; 1 when absent."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    endian = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(endian + "I", tiff, 4)
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack_from(endian + "H", tiff, ifd)
    for entry in range(count):
        offset = ifd + 2 + 12 * entry
        if offset + 12 > len(tiff):
            break
        tag, kind = struct.unpack_from(endian + "HH", tiff, offset)
        if tag == 0x0112 and kind == 3:
            (value,) = struct.unpack_from(endian + "H", tiff, offset + 8)
            return value if 1 <= value <= 8 else 1
    return 1


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, bytes, int]]:
    """Yield (marker, payload, end offset) of JPEG header segments up to the start of scan."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack_from(">H", data, i + 2)
        yield marker, data[i + 4 : i + 2 + length], i + 2 + length
        if marker == 0xDA:
            return
        i += 2 + length


def _png_exif(data: bytes) -> bytes | None:
    i = 8
    while i + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, i)
        if kind == b"eXIf":
            return data[i + 8 : i + 8 + length]
        if kind in (b"IDAT", b"IEND"):
            return None
        i += 12 + length
    return None


def _webp_exif(data: bytes) -> bytes | None:
    i = 12
    while i + 8 <= len(data):
        kind, length = struct.unpack_from("<4sI", data, i)
        if kind == b"EXIF":
            block = data[i + 8 : i + 8 + length]
            return block[6:] if block.startswith(b"Exif\x00\x00") else block
        i += 8 + length + (length & 1)
    return None


def exif_block(data: bytes) -> bytes | None:
    """The TIFF-structured EXIF block of an encoded JPEG, PNG, WebP or TIFF; None when it has none.

    Shared by the orientation read here and the capture-date read in ``exif``."""
    fmt = sniff_format(data)
    try:
        if fmt == "JPEG":
            for marker, payload, _end in _jpeg_segments(data):
                if marker == 0xE1 and payload.startswith(b"Exif\x00\x00"):
                    return payload[6:]
            return None
        if fmt == "PNG":
            return _png_exif(data)
        if fmt == "WEBP":
            return _webp_exif(data)
        return data if fmt == "TIFF" else None
    except struct.error:
        return None


def exif_orientation(data: bytes) -> int:
    """EXIF orientation (1-8) of an encoded image; 1 (upright) when it has none."""
    block = exif_block(data)
    try:
        return _tiff_orientation(block) if block else 1
    except struct.error:
        return 1


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, without decoding pixels."""
    try:
        for marker, payload, _end in _jpeg_segments(data):
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack_from(">HH", payload, 1)
                return width, height
    except struct.error:
        return None
    return None


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from the file header, before any pixel is decoded.

    Lets the pixel limit refuse a decompression bomb (a small PNG that inflates to
    gigabytes) before OpenCV allocates it. None when the header does not say.
    """
    fmt = sniff_format(data)
    try:
        if fmt == "JPEG":
            return jpeg_size(data)
        if fmt == "PNG" and data[12:16] == b"IHDR":
            return struct.unpack_from(">II", data, 16)
        if fmt == "GIF":
            return struct.unpack_from("<HH", data, 6)
        if fmt == "BMP":
            width, height = struct.unpack_from("<ii", data, 18)
            return abs(width), abs(height)
        if fmt == "WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":
                return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
            if chunk == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
            if chunk == b"VP8 ":
                width, height = struct.unpack_from("<HH", data, 26)
                return width & 0x3FFF, height & 0x3FFF
    except struct.error:
        return None
    return None


def _jpeg_complete(data: bytes) -> bool:
    """Whether an end-of-image marker follows the start of scan.

    Not "the file ends with it": motion photos append a video after the JPEG.
    """
    try:
        scan_start = next((end for marker, _payload, end in _jpeg_segments(data) if marker == 0xDA), 0)
    except struct.error:
        return False
    return scan_start > 0 and data.rfind(b"\xff\xd9") >= scan_start


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip pixels so that an image with EXIF *orientation* displays upright."""
    if orientation == 2:
        return cv2.flip(img, 1)
    if orientation == 3:
        return cv2.rotate(img, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(img, 0)
    if orientation == 5:
        return cv2.transpose(img)
    if orientation == 6:
        return cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(img), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return img


# ----------------------------------------------------------------------------- decoding


@functools.cache
def _quiet_opencv() -> None:
    """OpenCV prints decoder warnings to stderr; pixsearch reports problems itself."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # pragma: no cover - very old OpenCV
        pass


def _to_rgb8(img: np.ndarray) -> np.ndarray:
    """Any decoded array (gray, BGR, BGRA; 8/16-bit or float) as H x W x 3 uint8 RGB.

    Transparent pixels are composited over white, the way viewers show them.
    """
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        scale = 255.0 if img.dtype.kind == "f" and float(np.nanmax(img, initial=0.0)) <= 1.0 else 1.0
        img = np.clip(np.nan_to_num(img.astype(np.float32)) * scale, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 4:
        alpha = img[:, :, 3:4].astype(np.float32) * (1.0 / 255.0)
        rgb = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB).astype(np.float32)
        over_white: np.ndarray = (rgb * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
        return over_white
    return cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)


def _jpeg_reduction(width: int, height: int, min_side: int | None) -> int:
    """Largest libjpeg scale-down (1, 2, 4, 8) that keeps the short side >= *min_side*."""
    if not min_side:
        return 1
    short = min(width, height)
    for factor in (8, 4, 2):
        if short // factor >= min_side:
            return factor
    return 1


_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def decode_image(data: bytes, min_side: int | None = None, max_pixels: int = 250_000_000) -> DecodedImage:
    """Decode encoded image bytes into an upright 8-bit RGB array.

    *min_side*: when given, a large JPEG may be decoded at 1/2, 1/4 or 1/8 scale
    as long as its short side stays at least this long (much faster, and the model
    sees a downscaled image anyway). Raises ImageError with a reason otherwise.
    """
    _quiet_opencv()
    if not data:
        raise ImageError("empty file (0 bytes)")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError("not an image (unrecognised format; supported: JPEG, PNG, WebP, BMP, TIFF, GIF)")
    flags = cv2.IMREAD_UNCHANGED
    full_size = header_size(data)
    if full_size is not None and full_size[0] * full_size[1] > max_pixels:
        raise ImageError(f"image too large ({full_size[0]}x{full_size[1]} > max_pixels {max_pixels})")
    if fmt == "JPEG":
        if not _jpeg_complete(data):
            raise ImageError("truncated JPEG (no end-of-image marker): the file was cut short; re-copy it")
        if full_size is None:
            raise ImageError("corrupt JPEG (no frame header)")
        factor = _jpeg_reduction(*full_size, min_side)
        flags = (_REDUCED_FLAGS[factor] if factor > 1 else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        raise ImageError(f"corrupt {fmt} data ({str(exc).strip().splitlines()[-1][:120]})") from exc
    if img is None or img.size == 0:
        raise ImageError(f"corrupt or truncated {fmt} data: OpenCV could not decode it")
    width, height = (full_size if fmt == "JPEG" else None) or (img.shape[1], img.shape[0])
    if width * height > max_pixels:
        raise ImageError(f"image too large ({width}x{height} > max_pixels {max_pixels})")
    orientation = exif_orientation(data)
    rgb = apply_orientation(_to_rgb8(img), orientation)
    if orientation >= 5:
        width, height = height, width
    return DecodedImage(rgb=np.ascontiguousarray(rgb), width=width, height=height)


def load_image(path: Path, min_side: int | None = None, max_pixels: int = 250_000_000,
               max_bytes: int = 256 * 1024 * 1024) -> DecodedImage:
    """Read and decode one file (see decode_image)."""
    return decode_image(read_file(path, max_bytes), min_side=min_side, max_pixels=max_pixels)


def shrink(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """*rgb* scaled down (area interpolation) so its long side is at most *max_side*; smaller is kept."""
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    scale = max_side / max(h, w)
    out: np.ndarray = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                                 interpolation=cv2.INTER_AREA)
    return out


def encode_jpeg(rgb: np.ndarray, max_side: int | None = None, quality: int = 85) -> bytes:
    """JPEG bytes of an RGB array, optionally shrunk so its long side is at most *max_side*."""
    if max_side:
        rgb = shrink(rgb, max_side)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes 8-bit RGB
        raise ImageError("could not encode JPEG")
    return buf.tobytes()
