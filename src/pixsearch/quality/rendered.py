"""Images with known text written on photos: the ground truth for measuring OCR search.

Each image is a photo (a background) with one word drawn on a plain band, in one of several
fonts, sizes and rotations, so the OCR benchmark (``bench.ocr``) and the tests know exactly
what a good recogniser should read in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
)
SIZES = (22, 32, 48)
"""Letter heights in pixels on a 320-pixel-wide image."""
ROTATIONS = (0, 8, -15)
"""Degrees the text band is turned by."""


@dataclass(frozen=True)
class Rendered:
    """One written image: where it is and what it says."""

    path: Path
    word: str
    font: str
    size: int
    rotation: int


def _font(index: int, size: int) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, str]:
    """The *index*-th installed font of FONTS at *size* (Pillow's own font when none is installed)."""
    available = [f for f in FONTS if Path(f).is_file()]
    if not available:
        return ImageFont.load_default(size), "pillow-default"
    path = available[index % len(available)]
    return ImageFont.truetype(path, size), Path(path).stem


def render(background: Path, word: str, target: Path, variant: int, width: int = 320) -> Rendered:
    """Write *word* on a band across *background* (shrunk to *width*) and save it as JPEG at *target*.

    *variant* picks the font, size and rotation, so consecutive variants cover every combination."""
    size = SIZES[variant % len(SIZES)]
    rotation = ROTATIONS[(variant // len(SIZES)) % len(ROTATIONS)]
    font, font_name = _font(variant, size)
    with Image.open(background) as photo:
        base = photo.convert("RGB")
    base = base.resize((width, max(1, round(base.height * width / base.width))))
    box = [round(edge) for edge in font.getbbox(word)]
    band = Image.new("RGBA", (box[2] - box[0] + size, box[3] - box[1] + size), (250, 250, 245, 235))
    ImageDraw.Draw(band).text((size // 2 - box[0], size // 2 - box[1]), word, font=font, fill=(20, 20, 30, 255))
    band = band.rotate(rotation, expand=True, resample=Image.Resampling.BICUBIC)
    left = max(0, (base.width - band.width) // 2)
    top = max(0, (base.height - band.height) // 2)
    base.paste(band, (left, top), band)
    target.parent.mkdir(parents=True, exist_ok=True)
    base.save(target, quality=90)
    return Rendered(target, word, font_name, size, rotation)


def render_set(backgrounds: Sequence[Path], words: Sequence[str], folder: Path) -> list[Rendered]:
    """One image per word, backgrounds and variants taken in turn."""
    return [render(backgrounds[i % len(backgrounds)], word, folder / f"text_{i:03d}_{word}.jpg", i)
            for i, word in enumerate(words)]
