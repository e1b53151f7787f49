"""``pixsearch serve``: the web page and REST API for one indexed collection.

FastAPI, Gradio and uvicorn are imported inside the command, so other commands
start as fast as before.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from .common import CollectionOpt, DbOpt, ModelOpt, ThreadsOpt, TokenOpt, console, err, friendly_errors, settings_from


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def browser_url(host: str, port: int) -> str:
    """The address to open: a wildcard bind is reached through 127.0.0.1 from this machine."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


@friendly_errors
def serve(
    db: DbOpt = None, token: TokenOpt = None, collection: CollectionOpt = None, model: ModelOpt = None,
    threads: ThreadsOpt = None,
    host: Annotated[str | None, typer.Option(
        "--host", help="Address to listen on (default 127.0.0.1); --host 0.0.0.0 opens it to your network.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port to listen on (default 8000).")] = None,
    api_token: Annotated[str | None, typer.Option(
        "--api-token", help="Require 'Authorization: Bearer TOKEN' on /api (and TOKEN as the page's password). "
                            "Env: PIXSEARCH_API_TOKEN.")] = None,
    index: Annotated[list[Path] | None, typer.Option(
        "--index", help="Also index this folder (or CSV) in the background while serving; repeatable.")] = None,
    watch: Annotated[bool, typer.Option(
        "--watch", help="With --index: keep the index in sync with file changes while serving.")] = False,
) -> None:
    """Serve a search page and a REST API (docs at /docs) for an indexed collection.

    With Milvus Lite only one process can open the database, so to search while
    indexing, let the server do the indexing: ``pixsearch serve --index DIR --watch``.
    """
    import uvicorn

    from ..api import create_app

    settings = settings_from(db=db, token=token, collection=collection, model=model, threads=threads, host=host,
                             port=port, api_token=api_token)
    if not is_loopback(settings.host) and not settings.api_token:
        err.print(f"[yellow]warning:[/] listening on {settings.host} without --api-token: anyone who can reach "
                  "this machine can search and view your indexed pictures.", highlight=False)
    if watch and not index:
        raise typer.BadParameter("--watch needs --index FOLDER")
    app = create_app(settings, index_paths=[str(p) for p in index or []], watch=watch,
                     on_report=lambda report: err.print(report.summary(), highlight=False))
    stats = app.state.service.stats()
    url = browser_url(settings.host, settings.port)
    console.print(f"pixsearch: {stats.count:,} images in {stats.collection} (model {stats.model_id})", highlight=False,
                  soft_wrap=True)
    console.print(f"open [bold]{url}[/]   API docs: {url}/docs   (Ctrl-C to stop)", highlight=False, soft_wrap=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
