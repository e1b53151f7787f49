"""``pixsearch models`` and ``pixsearch convert``: the models pixsearch knows, and making one from a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import UserError, console, friendly_errors


def models(as_json: Annotated[bool, typer.Option("--json", help="Print every field as JSON.")] = False) -> None:
    """List the pretrained models pixsearch knows by name."""
    from rich import box
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    from ..models import REGISTRY

    if as_json:
        console.print_json(json.dumps([vars(m) for m in REGISTRY.values()]))
        return
    # Names are what users type: their column is never narrower than the longest one and takes
    # the slack. Details get a row of their own beneath, so at 80 columns nothing needed is cut.
    table = Table(expand=True, box=box.SIMPLE_HEAD, header_style="bold", show_edge=False, pad_edge=False)
    table.add_column("name", overflow="fold", ratio=1, min_width=max(len(name) for name in REGISTRY))
    table.add_column("dim", justify="right", no_wrap=True)
    table.add_column("GFLOP/image", justify="right", no_wrap=True)
    table.add_column("XM3600 EN/ZH", justify="right", no_wrap=True)
    for m in REGISTRY.values():
        recall = " / ".join(f"{x:.1f}" if x else "-" for x in (m.xm3600_en, m.xm3600_zh))
        table.add_row(Text(m.name, style="bold"), str(m.dim), f"{m.gflops_per_image:g}", recall)
        coco = f" · COCO 5k R@5 {100 * m.coco_t2i_recall_at_5:.1f}" if m.coco_t2i_recall_at_5 else ""
        details = Text(f"{m.summary}\nlanguages: {m.languages}{coco}\nhub: {m.repo}", style="dim", overflow="fold")
        table.add_row(Padding(details, (0, 0, 0, 2)), end_section=True)
    console.print(table)
    console.print("Or pass --model DIR (a local model folder) or --model hf-hub:owner/repo. "
                  "`pixsearch models --json` prints every field.", highlight=False)


@friendly_errors
def convert(
    source: Annotated[Path, typer.Argument(help="A transformers checkpoint folder (CLIP, SigLIP, Chinese-CLIP).")],
    output: Annotated[Path, typer.Argument(help="Folder to write the pixsearch ONNX model into.")],
) -> None:
    """Convert a transformers checkpoint to pixsearch's ONNX layout (needs the torch extra)."""
    from ..models.convert import convert_checkpoint

    try:
        occupied = output.exists() and any(output.iterdir())
    except OSError as exc:
        raise UserError(f"cannot use {output} as the output folder: {exc.strerror or exc}") from exc
    if occupied:
        raise UserError(f"{output} is not empty; choose a new folder")
    spec = convert_checkpoint(source, output)
    console.print(f"wrote {output} (model id {spec.model_id}, dim {spec.dim}); use it with --model {output}")
