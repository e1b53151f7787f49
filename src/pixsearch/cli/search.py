"""``pixsearch search``: by text, by an example image, by an indexed image's id, or a weighted mix.

The QUERY argument is read by ``query_syntax`` (documented there and in ``--help``); plain words
stay one text term exactly as typed. ``--image`` and ``--like`` add a term each.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
    err,
    friendly_errors,
    settings_from,
)

if TYPE_CHECKING:
    from ..search import ImageTerm, Term


def print_hits(hits: Sequence[Hit], as_json: bool, first_rank: int = 1) -> None:
    from ..search import hit_fields

    if as_json:
        console.print_json(json.dumps([{"id": h.id, "score": round(h.score, 6), **hit_fields(h)} for h in hits]))
        return
    if not hits:
        console.print("no results", soft_wrap=True)
        return
    table = Table(show_header=True, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("path", overflow="fold")
    table.add_column("label")
    for rank, hit in enumerate(hits, start=first_rank):
        table.add_row(str(rank), f"{hit.score:.4f}", hit.path, hit.fields.get("label", ""))
    console.print(table)


def _require_indexed_under(store: Store, folder: str, given: str) -> None:
    """No results under --folder: say so when the folder holds no indexed image at all (a typo,
    or a folder never indexed), rather than printing "no results"."""
    if next(store.iter_under(folder, ("path",)), None) is None:
        shown = given if given == folder else f"{given} ({folder})"
        raise UserError(f"no indexed images under --folder {shown}")


QUERY_HELP = (
    "Words describing the picture, or a weighted sum of terms: \"quoted text\", image files (paths "
    "starting with ./ ../ / or ~), indexed ids (@id:<16 hex>), each optionally weighted (0.5*term), "
    "joined by + or -. Example: '\"beach\" + 0.5*./dog.jpg - \"people\"'.")


def read_image_term(path: str, weight: float, what: str) -> ImageTerm:
    """The bytes of an image file named in a query, as a term; an unreadable file names the term."""
    from ..search import ImageTerm

    expanded = Path(os.path.expanduser(path))
    try:
        return ImageTerm(expanded.read_bytes(), weight, name=path)
    except OSError as exc:
        raise UserError(f"cannot read {what}: {exc.strerror or exc}") from exc


def query_terms(query: str) -> list[Term]:
    """The terms of the QUERY argument: plain words are one text term as typed (as always)."""
    from ..query_syntax import QuerySyntaxError, is_plain, parse
    from ..search import IdTerm, TextTerm

    try:
        if is_plain(query):
            return [TextTerm(query)]
        parsed = parse(query)
    except QuerySyntaxError as exc:
        raise UserError(str(exc)) from exc
    terms: list[Term] = []
    for term in parsed:
        if term.kind == "text":
            terms.append(TextTerm(term.value, term.weight))
        elif term.kind == "id":
            terms.append(IdTerm(term.value, term.weight))
        else:
            terms.append(read_image_term(term.value, term.weight, f"image {term.describe()}"))
    return terms


@friendly_errors
def search(
    query: Annotated[str | None, typer.Argument(help=QUERY_HELP)] = None,
    image: Annotated[Path | None, typer.Option("--image", "-i", help="Find images like this file.")] = None,
    like: Annotated[str | None, typer.Option("--like", help="Find images like the indexed image with this id.")] = None,
    k: Annotated[int, typer.Option("-k", "--top", help="Number of results.")] = 10,
    offset: Annotated[int, typer.Option("--offset", help="Skip this many results first (page n of k: "
                                        "--offset (n-1)*k); offset + k is bounded, as the error says.")] = 0,
    min_score: Annotated[float | None, typer.Option("--min-score", help="Hide results scoring below this.")] = None,
    folder: Annotated[str | None, typer.Option("--folder", help="Only images under this folder.")] = None,
    label: Annotated[str | None, typer.Option("--label", help="Only images with this label.")] = None,
    after: Annotated[str | None, typer.Option("--after", help="Only images taken at or after this ISO date or "
                                              "date-time (2024-05-01, 2024-05-01T12:00+02:00; no offset: UTC).")
                     ] = None,
    before: Annotated[str | None, typer.Option("--before", help="Only images taken before this ISO date or "
                                               "date-time (exclusive).")] = None,
    cut: Annotated[str, typer.Option("--cut", help="Relevance cut: auto keeps only the results that stand out "
                                     "from this query's own scores (see the README for when to trust it); "
                                     "mixture, otsu or gap name a method; none (default) keeps all.")] = "none",
    relevant: Annotated[bool, typer.Option("--relevant", help="Only relevant results: --cut auto.")] = False,
    sort: Annotated[str, typer.Option("--sort", help="relevance, or date: the results (after --min-score) "
                                      "newest-taken first; it orders the relevant set, not the whole library.")
                    ] = "relevance",
    db: DbOpt = None, token: TokenOpt = None, collection: CollectionOpt = None, model: ModelOpt = None,
    threads: ThreadsOpt = None, precision: PrecisionOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Find images by text, by an example image file, by an indexed image's id, or a weighted sum of them.

    Results are ranked by cosine similarity to the sum of each term's unit vector times its weight,
    scaled back to unit length. --image and --like add a term of weight 1 to the QUERY's terms.
    """
    from ..search import IdTerm, Query, QueryError, Searcher, check_cut, check_sort, parse_date
    from ..store import Filters
    from ..workspace import open_workspace

    if query is None and image is None and like is None:
        raise UserError("give a QUERY, --image FILE or --like ID (or several: their terms are summed)")
    terms = query_terms(query) if query is not None else []
    if image is not None:
        terms.append(read_image_term(str(image), 1.0, f"--image {image}"))
    if like is not None:
        terms.append(IdTerm(like))
    try:
        check_sort(sort)
        cut = check_cut("auto" if relevant and cut == "none" else cut)
        bounds = {name: parse_date(value, f"--{name}") if value is not None else None
                  for name, value in (("after", after), ("before", before))}
    except QueryError as exc:
        raise UserError(str(exc)) from exc
    filters = Filters(folder=os.path.abspath(os.path.expanduser(folder)) if folder else "", label=label or "",
                      min_score=min_score, after=bounds["after"], before=bounds["before"])
    settings = settings_from(db=db, token=token, collection=collection, model=model, threads=threads,
                             precision=precision)
    ws = open_workspace(settings)
    try:
        results = Searcher(ws.store, ws.embedder).results(Query(tuple(terms), k, filters, offset, sort, cut))
        hits = results.hits
        if not hits and filters.folder:
            _require_indexed_under(ws.store, filters.folder, folder or "")
    finally:
        ws.close()
    print_hits(hits, as_json, first_rank=offset + 1)
    if results.relevant is not None:
        err.print(f"relevance cut ({cut}): {results.relevant} relevant, {results.cut} cut as not relevant",
                  highlight=False)
