"""Text in images: recognise the words written in a picture, for full-text search (``--ocr``).

The recogniser is ``rapidocr-onnxruntime`` (``pip install pixsearch[ocr]``): PP-OCRv4 text detection
and recognition ONNX models that ship inside its wheel, run by ONNX Runtime on the CPU, offline.
It was chosen by measurement (``python -m bench.ocr``; README "Text in images"): no other OCR
engine installable here without a download of weights at run time was available to compare.

The text is stored with the image (``ocr_text``) together with the recogniser's name
(``ocr_model``), so a later ``--ocr`` run knows which images still need reading; see ``ocrindex``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import PixsearchError

OCR_MODEL = "rapidocr-1.4.4-ppocrv4-max960"
"""What ``ocr_model`` records for text this module recognised (a different recogniser reads again)."""
ENGINE_OPTIONS: dict[str, Any] = {"print_verbose": False, "use_cls": False, "det_limit_type": "max",
                                  "det_limit_side_len": 960}
"""Measured on 28 rendered images (``bench.ocr``; 2 shared cores): the engine's defaults (upscale
the shorter side to 736 px, then an angle classifier) read 28/28 words at ~2.0 s per image;
detection on the longer side capped at 960 px without the classifier reads 28/28 at ~0.5 s; at
640 px, 28/28 at ~0.36 s but small print on big photos suffers. The classifier only matters for
upside-down text."""
MAX_SIDE = 1600
"""Longer images are shrunk to this before OCR: detection resizes to ~736 px anyway, and the
full resolution of a 24-megapixel photo only costs time."""
DECODE_SIDE = 960
"""Shorter side a JPEG may be decoded down to for OCR alone (``images.decode_image``'s min_side)."""
MIN_CONFIDENCE = 0.5
"""Recognised lines below this confidence are dropped (mostly texture read as letters)."""
MAX_TEXT = 4000
"""Characters of recognised text kept per image (the Milvus field holds 4096)."""


class OcrUnavailable(PixsearchError, RuntimeError):
    """``--ocr`` was asked for but the OCR engine is not installed."""


@dataclass(frozen=True)
class Line:
    """One recognised line of text and the recogniser's confidence in it (0..1)."""

    text: str
    confidence: float


class Recognizer:
    """RapidOCR, loaded on first use; one image at a time (its sessions are shared by threads)."""

    model = OCR_MODEL

    def __init__(self, threads: int = 0) -> None:
        self._threads = threads
        self._engine: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the engine now (``OcrUnavailable`` when it is not installed)."""
        with self._lock:
            self._load()

    def _load(self) -> Any:
        if self._engine is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as exc:
                raise OcrUnavailable("--ocr needs the OCR engine: pip install 'pixsearch[ocr]' "
                                     f"(rapidocr-onnxruntime; {exc})") from exc
            options: dict[str, Any] = dict(ENGINE_OPTIONS)
            if self._threads > 0:
                options["intra_op_num_threads"] = self._threads
            self._engine = RapidOCR(**options)
        return self._engine

    def lines(self, rgb: np.ndarray) -> list[Line]:
        """The text lines in an RGB image (H x W x 3, uint8), top to bottom as the engine orders them."""
        image = _shrunk(np.ascontiguousarray(rgb[:, :, ::-1]))  # the engine wants BGR, as OpenCV reads
        with self._lock:
            engine = self._load()
            result, _elapsed = engine(image)
        out = []
        for _box, text, confidence in result or []:
            if float(confidence) >= MIN_CONFIDENCE and str(text).strip():
                out.append(Line(str(text).strip(), float(confidence)))
        return out

    def read(self, rgb: np.ndarray) -> str:
        """The text in an RGB image as one string (lines joined by newlines), or "" when none."""
        return "\n".join(line.text for line in self.lines(rgb))[:MAX_TEXT]


def _shrunk(bgr: np.ndarray) -> np.ndarray:
    """*bgr* with its longer side at most MAX_SIDE (OpenCV's area filter keeps strokes legible)."""
    height, width = bgr.shape[:2]
    scale = MAX_SIDE / max(height, width)
    if scale >= 1:
        return bgr
    import cv2

    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA))


def words(text: str) -> list[str]:
    """Lower-case words of *text* (letters and digits), as both full-text backends compare them."""
    import re

    return re.findall(r"[0-9a-z]+", text.lower())
