"""``pixsearch stats``: what a database holds, and which files could not be indexed."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from .common import DbOpt, TokenOpt, console, friendly_errors, settings_from


@friendly_errors
def stats(
    db: DbOpt = None, token: TokenOpt = None,
    skipped: Annotated[bool, typer.Option(
        "--skipped", help="List the files that could not be indexed, and why.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show the collections in a database: model, dimension, number of images."""
    from ..store import SkipLog, Store

    settings = settings_from(db=db, token=token)
    with Store(settings.db, token=settings.token) as store:
        infos = store.collections()
        skips: dict[str, list[dict[str, Any]]] = {}
        for info in infos if skipped else []:
            skips[info.name] = sorted(SkipLog(store, info.name).rows().values(), key=lambda r: str(r["path"]))
    if skipped:
        print_skips(skips, as_json)
        return
    if as_json:
        console.print_json(json.dumps([vars(i) for i in infos]))
        return
    if not infos:
        console.print(f"{settings.db}: no pixsearch collections yet; run `pixsearch index PATH`")
        return
    table = Table("collection", "model", "dim", "images", "backend", header_style="bold")
    for info in infos:
        table.add_row(info.name, info.model, str(info.dim), str(info.count), info.backend)
    console.print(table)


def print_skips(skips: dict[str, list[dict[str, Any]]], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps({name: [{k: r[k] for k in ("path", "size", "mtime", "reason")} for r in rows]
                                       for name, rows in skips.items()}))
        return
    for name, rows in skips.items():
        console.print(f"[bold]{name}[/]: {len(rows)} skipped files (retried when they change)")
        for row in rows:
            console.print(f"  {row['path']}: {row['reason']}", highlight=False, soft_wrap=True)
