"""``pixsearch quantize``: make an INT8 variant of a model and say how well it agrees with fp32.

The work (quantizing, verifying, recording) is ``models.quantize``; this module reads the
flags and the queries file and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import UserError, console, friendly_errors, settings_from

MIN_QUERIES = 5
"""Fewer queries than this say too little about the text tower."""


def read_queries(path: Path | None) -> list[str]:
    """The verification queries: the file's non-empty lines, or the built-in everyday descriptions."""
    from ..models.quantize import DEFAULT_QUERIES

    if path is None:
        return list(DEFAULT_QUERIES)
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise UserError(f"--queries {path}: cannot read it ({reason})") from exc
    found = [line for line in lines if line]
    if len(found) < MIN_QUERIES:
        raise UserError(f"{path}: need at least {MIN_QUERIES} queries (one per line) to verify the text tower")
    return found


def _say(message: str) -> None:
    console.print(message, markup=False, highlight=False, soft_wrap=True)


@friendly_errors
def quantize(
    model: Annotated[str, typer.Option("--model", "-m", help="Model name, hf-hub:owner/repo or folder, any layout.")],
    images: Annotated[Path, typer.Option(
        "--images", help="Folder of real photos to verify on (a few dozen of yours).")],
    queries: Annotated[Path | None, typer.Option(
        "--queries", help="Text file, one verification query per line.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many sample images.")] = 64,
    threads: Annotated[int, typer.Option("--threads", help="ONNX Runtime threads (0: auto).")] = 0,
) -> None:
    """Make an INT8 variant of a model; `--precision auto` uses it only if it agrees with fp32.

    The variant goes into pixsearch's cache (never into the model folder), keyed by model id.
    """
    from ..models import load_spec
    from ..models.quantize import MIN_COSINE, MIN_TOP10_OVERLAP, quantize_model, sample_images

    if not images.is_dir():
        raise UserError(f"--images {images}: not a folder")
    texts = read_queries(queries)
    cache_dir = Path(settings_from().cache_dir).expanduser()
    spec = load_spec(model, cache_dir)
    report = quantize_model(spec, cache_dir, sample_images(images, limit), texts, threads, log=_say)
    for tower in (report.image, report.text):
        _say(f"{tower.tower} tower: {tower.recipe}, min cosine {tower.min_cosine:.5f} (mean {tower.mean_cosine:.5f}), "
             f"{tower.speedup:.2f}x fp32 speed")
    _say(f"text->image top-10 overlap with fp32: {report.top10_overlap:.3f}")
    _say(f"recorded in {report.overlay}")
    if report.verified:
        _say(f"verified: --precision auto now uses int8 for {spec.model_id}")
    else:
        _say(f"NOT verified (needs cosine >= {MIN_COSINE} and overlap >= {MIN_TOP10_OVERLAP}): "
             "kept as --precision int8 only; auto stays fp32")
