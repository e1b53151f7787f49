"""``pixsearch search``: by text, by an example image, or by an indexed image's id."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..store import Hit, Store
from .common import (
    CollectionOpt,
    DbOpt,
    ModelOpt,
    PrecisionOpt,
    ThreadsOpt,
    TokenOpt,
    UserError,
    console,
    friendly_errors,
    settings_from,
)


def print_hits(hits: Sequence[Hit], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps([{"id": h.id, "score": round(h.score, 6), **h.fields} for h in hits]))
        return
    if not hits:
        console.print("no results", soft_wrap=True)
        return
    table = Table(show_header=True, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("path", overflow="fold")
    table.add_column("label")
    for rank, hit in enumerate(hits, start=1):
        table.add_row(str(rank), f"{hit.score:.4f}", hit.path, hit.fields.get("label", ""))
    console.print(table)


def _require_indexed_under(store: Store, folder: str, given: str) -> None:
    """No results under --folder: say so when the folder holds no indexed image at all (a typo,
    or a folder never indexed), rather than printing "no results"."""
    if next(store.iter_under(folder, ("path",)), None) is None:
        shown = given if given == folder else f"{given} ({folder})"
        raise UserError(f"no indexed images under --folder {shown}")


@friendly_errors
def search(
    query: Annotated[str | None, typer.Argument(
        help="Words describing the picture, in the model's language(s).")] = None,
    image: Annotated[Path | None, typer.Option("--image", "-i", help="Find images like this file.")] = None,
    like: Annotated[str | None, typer.Option("--like", help="Find images like the indexed image with this id.")] = None,
    k: Annotated[int, typer.Option("-k", "--top", help="Number of results.")] = 10,
    min_score: Annotated[float | None, typer.Option("--min-score", help="Hide results scoring below this.")] = None,
    folder: Annotated[str | None, typer.Option("--folder", help="Only images under this folder.")] = None,
    label: Annotated[str | None, typer.Option("--label", help="Only images with this label.")] = None,
    db: DbOpt = None, token: TokenOpt = None, collection: CollectionOpt = None, model: ModelOpt = None,
    threads: ThreadsOpt = None, precision: PrecisionOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Find images by text, by an example image file, or by an indexed image's id."""
    from ..search import IdTerm, ImageTerm, Query, Searcher, Term, TextTerm
    from ..store import Filters
    from ..workspace import open_workspace

    given = [x is not None for x in (query, image, like)]
    if sum(given) != 1:
        raise UserError("give exactly one of: a text QUERY, --image FILE, or --like ID")
    term: Term
    if query is not None:
        term = TextTerm(query)
    elif image is not None:
        try:
            term = ImageTerm(image.read_bytes())
        except OSError as exc:
            raise UserError(f"cannot read --image {image}: {exc.strerror or exc}") from exc
    else:
        assert like is not None
        term = IdTerm(like)
    filters = Filters(folder=os.path.abspath(os.path.expanduser(folder)) if folder else "", label=label or "",
                      min_score=min_score)
    settings = settings_from(db=db, token=token, collection=collection, model=model, threads=threads,
                             precision=precision)
    ws = open_workspace(settings)
    try:
        hits = Searcher(ws.store, ws.embedder).search(Query.of(term, k, filters))
        if not hits and filters.folder:
            _require_indexed_under(ws.store, filters.folder, folder or "")
    finally:
        ws.close()
    print_hits(hits, as_json)
