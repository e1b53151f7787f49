"""Decoding: every supported format, every awkward pixel layout, EXIF orientation, broken files."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

from pixsearch.images import (
    ImageError,
    decode_image,
    exif_orientation,
    header_size,
    jpeg_size,
    load_image,
)
from pixsearch.models.preprocess import PreprocessConfig, resize_and_crop, to_model_input

from .conftest import sample_images
from .privileges import unreadable, without_dac_bypass


def encode(ext: str, img: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def gradient(h: int = 40, w: int = 60) -> np.ndarray:
    """A BGR test card: red grows left to right, green top to bottom, so orientation is visible."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 2] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    img[:, :, 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    return img


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an APP1 EXIF segment holding only the orientation tag (big-endian TIFF)."""
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def palette_png(indices: np.ndarray, palette: list[tuple[int, int, int]]) -> bytes:
    """A colour-type-3 (palette) PNG, written by hand since OpenCV cannot write one."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w = indices.shape
    header = struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)
    raw = b"".join(b"\x00" + indices[row].astype(np.uint8).tobytes() for row in range(h))
    plte = b"".join(bytes(c) for c in palette)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"PLTE", plte)
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".bmp", ".tiff", ".gif"])
def test_every_format_decodes_to_rgb8(ext):
    bgr = gradient()
    decoded = decode_image(encode(ext, bgr))
    assert decoded.rgb.dtype == np.uint8 and decoded.rgb.shape == (40, 60, 3)
    assert (decoded.width, decoded.height) == (60, 40)
    # Red rises to the right in RGB channel 0 (lossy formats: approximately).
    assert decoded.rgb[20, 55, 0] > decoded.rgb[20, 5, 0] + 100


def test_grayscale_becomes_rgb():
    gray = np.tile(np.arange(0, 250, 5, dtype=np.uint8), (10, 1))
    rgb = decode_image(encode(".png", gray)).rgb
    assert rgb.shape == (10, 50, 3) and (rgb[:, :, 0] == rgb[:, :, 2]).all()


def test_alpha_is_composited_over_white():
    bgra = np.zeros((8, 8, 4), np.uint8)
    bgra[:, :4] = (0, 0, 255, 255)  # opaque red on the left, transparent black on the right
    rgb = decode_image(encode(".png", bgra)).rgb
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert tuple(rgb[0, 7]) == (255, 255, 255)


def test_sixteen_bit_becomes_eight_bit():
    img16 = (gradient().astype(np.uint16) * 257)
    rgb = decode_image(encode(".png", img16)).rgb
    assert rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - cv2.cvtColor(gradient(), cv2.COLOR_BGR2RGB).astype(int)).max() <= 1


def test_palette_png():
    indices = np.array([[0, 1], [1, 0]])
    rgb = decode_image(palette_png(indices, [(255, 0, 0), (0, 0, 255)])).rgb
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[0, 1]) == (0, 0, 255)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_opencv(orientation):
    data = with_exif_orientation(encode(".jpg", gradient(), cv2.IMWRITE_JPEG_QUALITY, 100), orientation)
    assert exif_orientation(data) == orientation
    ours = decode_image(data)
    reference = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert ours.rgb.shape == reference.shape
    assert np.abs(ours.rgb.astype(int) - reference.astype(int)).max() <= 2
    assert (ours.width, ours.height) == (reference.shape[1], reference.shape[0])


def test_large_jpeg_decodes_reduced_but_reports_full_size():
    big = cv2.resize(gradient(), (2400, 1600))
    data = encode(".jpg", big)
    assert jpeg_size(data) == (2400, 1600)
    decoded = decode_image(data, min_side=224)
    assert (decoded.width, decoded.height) == (2400, 1600)
    assert decoded.rgb.shape[:2] == (200 * 2, 300 * 2)  # 1/4 scale keeps the short side >= 224
    assert min(decoded.rgb.shape[:2]) >= 224


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"hello, I am a text file", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "PNG"),
    ],
)
def test_broken_inputs_raise_with_reason(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode_image(data)


def test_truncated_jpeg_is_refused():
    data = encode(".jpg", cv2.resize(gradient(), (300, 200)))
    with pytest.raises(ImageError, match="truncated"):
        decode_image(data[: len(data) // 2])


def test_too_many_pixels_is_refused():
    with pytest.raises(ImageError, match="too large"):
        decode_image(encode(".png", gradient(100, 100)), max_pixels=5000)


def test_non_ascii_path_and_empty_file(tmp_path):
    path = tmp_path / "été 写真.png"
    path.write_bytes(encode(".png", gradient()))
    assert load_image(path).rgb.shape == (40, 60, 3)
    with pytest.raises(ImageError, match="empty"):
        (tmp_path / "zero.jpg").write_bytes(b"")
        load_image(tmp_path / "zero.jpg")


def test_missing_read_permission_is_an_unreadable_file_not_a_bad_image(tmp_path):
    """A real denial (tests/privileges.py): the reason says what to fix, and ``unreadable`` marks it
    as a failure to read, which keeps the file's row in the index (see indexer._commit)."""
    path = tmp_path / "été 写真.png"
    path.write_bytes(encode(".png", gradient()))
    probe = ("import json, sys\nfrom pathlib import Path\nfrom pixsearch.images import ImageError, load_image\n"
             "try:\n    load_image(Path(sys.argv[1]))\nexcept ImageError as exc:\n"
             "    print(json.dumps([exc.reason, exc.unreadable]))\n")
    with unreadable(path):
        result = subprocess.run(without_dac_bypass([sys.executable, "-c", probe, str(path)]),
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    reason, is_unreadable = json.loads(result.stdout)
    assert reason.startswith("permission denied") and is_unreadable


def test_sample_photos_decode():
    for path in sample_images():
        decoded = load_image(path)
        assert decoded.rgb.ndim == 3 and decoded.width > 0


def test_resize_modes():
    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[:, 50:150] = 255  # a white centre band the crop must keep
    crop = resize_and_crop(rgb, PreprocessConfig(size=(32, 32), resize="shortest"))
    assert crop.shape == (32, 32, 3) and crop.mean() > 250
    squashed = resize_and_crop(rgb, PreprocessConfig(size=(16, 48), resize="squash"))
    assert squashed.shape == (16, 48, 3)
    batch = to_model_input([crop, crop], PreprocessConfig(size=(32, 32), mean=(0.5,) * 3, std=(0.5,) * 3))
    assert batch.shape == (2, 3, 32, 32) and batch.dtype == np.float32
    assert np.allclose(batch, 1.0)  # white -> (1 - 0.5) / 0.5


def test_jpeg_with_trailing_data_is_read():
    """Motion photos append a video after the JPEG's end-of-image marker."""
    data = encode(".jpg", gradient()) + b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 500
    assert decode_image(data).rgb.shape == (40, 60, 3)


@pytest.mark.parametrize("ext", [".png", ".gif", ".bmp", ".webp"])
def test_header_size_refuses_pixel_bombs_before_decoding(ext):
    data = encode(ext, np.zeros((300, 500, 3), np.uint8))
    assert header_size(data) == (500, 300)
    with pytest.raises(ImageError, match="too large"):
        decode_image(data, max_pixels=100_000)


def test_a_small_png_bomb_does_not_allocate_its_pixels():
    """In a fresh process, so that the peak-memory reading is this decode's alone."""
    import subprocess
    import sys

    script = (
        "import resource, struct, sys, zlib\n"
        "from pixsearch.images import ImageError, decode_image\n"
        "def chunk(kind, body):\n"
        "    return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))\n"
        "side = 4000  # 16-bit RGBA: 128 MB of pixels, written row by row into ~0.1 MB of PNG\n"
        "packer, row = zlib.compressobj(9), bytes(1 + side * 8)\n"
        "idat = b''.join(packer.compress(row) for _ in range(side)) + packer.flush()\n"
        "data = (b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', side, side, 16, 6, 0, 0, 0))\n"
        "        + chunk(b'IDAT', idat) + chunk(b'IEND', b''))\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    decode_image(data, max_pixels=int(sys.argv[1]))\n"
        "except ImageError as exc:\n"
        "    assert 'too large' in exc.reason\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    def growth_kib(max_pixels: int) -> int:
        run = subprocess.run([sys.executable, "-c", script, str(max_pixels)], capture_output=True, text=True,
                             check=True)
        return int(run.stdout.strip())

    assert growth_kib(1_000_000) < 40_000
    assert growth_kib(100_000_000) > 100_000  # the same file, allowed: the measurement does see a decode
