"""``pixsearch duplicates``: groups of indexed images that are the same picture, with the evidence."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from .common import CollectionOpt, DbOpt, ModelOpt, TokenOpt, UserError, console, friendly_errors, settings_from

if TYPE_CHECKING:
    from ..duplicates import Report


@friendly_errors
def duplicates(
    folder: Annotated[str | None, typer.Argument(help="Only images at or under this folder (default: all).")] = None,
    db: DbOpt = None, token: TokenOpt = None, collection: CollectionOpt = None, model: ModelOpt = None,
    max_hamming: Annotated[int | None, typer.Option(
        "--max-hamming", help="Most differing bits of 64 between copies' hashes (default 12). "
        "Env: PIXSEARCH_DUP_HAMMING.")] = None,
    min_cosine: Annotated[float | None, typer.Option(
        "--min-cosine", help="Least CLIP cosine between copies (default 0.80). Env: PIXSEARCH_DUP_COSINE.")] = None,
    similar: Annotated[bool, typer.Option(
        "--similar", help="Also report similar-but-different photos (bursts, re-framed shots), by the model.")] = False,
    similar_cosine: Annotated[float | None, typer.Option(
        "--similar-cosine", help="Least CLIP cosine of a similar pair (default 0.92). "
        "Env: PIXSEARCH_SIMILAR_COSINE.")] = None,
    max_groups: Annotated[int, typer.Option("--limit", help="Most groups shown, largest first (0: all).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print groups and pairs as JSON.")] = False,
) -> None:
    """Find images that are the same picture: copies, re-encodes, resizes, slight crops, rotations, mirrors.

    Decided by each image's perceptual hash (kept at index time) AND its CLIP vector; similar-but-different
    photos are reported only with --similar.
    """
    import os

    from ..duplicates import DuplicatesError, Limits, Rules, find
    from ..workspace import open_collection

    settings = settings_from(db=db, token=token, collection=collection, model=model, dup_hamming=max_hamming,
                             dup_cosine=min_cosine, similar_cosine=similar_cosine)
    rules = Rules(max_hamming=settings.dup_hamming, min_cosine=settings.dup_cosine, similar=similar,
                  similar_cosine=settings.similar_cosine)
    store = open_collection(settings)
    try:
        report = find(store, rules, Limits(max_groups=max_groups),
                      folder=os.path.abspath(os.path.expanduser(folder)) if folder else "")
    except DuplicatesError as exc:
        raise UserError(str(exc)) from exc
    finally:
        store.close()
    if as_json:
        console.print_json(json.dumps(asdict(report)))
        return
    print_report(report)


def print_report(report: Report) -> None:
    for n, group in enumerate(report.groups, 1):
        original = group.original
        console.print(f"[bold]group {n}[/]: {len(group.members)} copies of {original.path} "
                      f"({original.width}x{original.height}, {original.size} bytes)", highlight=False, soft_wrap=True)
        for copy in group.members[1:]:
            turned = f", orientation {copy.orientation}" if copy.orientation else ""
            console.print(f"  {copy.kind}: {copy.path} ({copy.width}x{copy.height}, {copy.size} bytes; "
                          f"hash {copy.hamming} bits apart{turned}, cosine {copy.cosine:.3f})",
                          highlight=False, soft_wrap=True)
    tail = f"{len(report.groups)} groups among {report.examined} images"
    if report.unhashed:
        tail += (f"; {report.unhashed} images have no perceptual hash yet: run `pixsearch index` on their folders "
                 "(they are hashed without re-embedding)")
    if report.truncated:
        tail += "; cut short by --limit"
    console.print(tail, highlight=False, soft_wrap=True)
