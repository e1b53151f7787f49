"""``pixsearch stats``: what a database holds, and which files could not be indexed."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from .common import DbOpt, TokenOpt, console, friendly_errors, settings_from

if TYPE_CHECKING:
    from ..store import SkipRow


@friendly_errors
def stats(
    db: DbOpt = None, token: TokenOpt = None,
    skipped: Annotated[bool, typer.Option(
        "--skipped", help="List the files that could not be indexed, and why.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show the collections in a database: model, dimension, number of images."""
    from ..store import CollectionInfo, SkipLog, Store
    from ..workspace import database_exists

    settings = settings_from(db=db, token=token)
    infos: list[CollectionInfo] = []
    skips: dict[str, list[SkipRow]] = {}
    if database_exists(settings.db):  # asking must not create an empty database
        with Store(settings.db, token=settings.token) as store:
            infos = store.collections()
            for info in infos if skipped else []:
                skips[info.name] = sorted(SkipLog(store, info.name).rows().values(), key=lambda r: str(r["path"]))
    if skipped:
        print_skips(skips, as_json)
        return
    if as_json:
        console.print_json(json.dumps([vars(i) for i in infos]))
        return
    if not infos:
        console.print(f"{settings.db}: no pixsearch collections yet; run `pixsearch index PATH`", soft_wrap=True)
        return
    table = Table("collection", "model", "dim", "images", "backend", header_style="bold")
    for info in infos:
        table.add_row(info.name, info.model, str(info.dim), str(info.count), info.backend)
    console.print(table)


def print_skips(skips: dict[str, list[SkipRow]], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps({name: [{k: r[k] for k in ("path", "size", "mtime", "reason")} for r in rows]
                                       for name, rows in skips.items()}))
        return
    for name, rows in skips.items():
        console.print(f"[bold]{name}[/]: {len(rows)} skipped files (retried when they change)")
        for row in rows:
            console.print(f"  {row['path']}: {row['reason']}", highlight=False, soft_wrap=True)
