"""The ``pixsearch`` command: thin wrappers that parse flags and print; the work lives elsewhere."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .config import ConfigError, Settings, load_settings
from .errors import PixsearchError
from .models import REGISTRY, ModelError
from .search import Filters, QueryError
from .store import StoreError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Search your pictures by text or by example, with CLIP models and Milvus.")
console = Console()
err = Console(stderr=True)
# pymilvus logs every failed RPC with a traceback; pixsearch reports failures itself, in one line.
logging.getLogger("pymilvus").setLevel(logging.CRITICAL)

DbOpt = Annotated[str | None, typer.Option("--db", help="Milvus URI: a file (Milvus Lite) or http://host:19530. Env: PIXSEARCH_DB.")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="Milvus token for a server. Env: PIXSEARCH_TOKEN.")]
CollectionOpt = Annotated[str | None, typer.Option("--collection", help="Collection name (default: one per model).")]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Registry name, hf-hub:owner/repo or a model folder. Env: PIXSEARCH_MODEL.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="ONNX Runtime threads (0: auto).")]
PrecisionOpt = Annotated[str | None, typer.Option("--precision", help="fp32, int8 or auto.")]


class UserError(PixsearchError):
    """Anything the user can fix; printed as one line, no traceback."""


EXPECTED_ERRORS = (ConfigError, ModelError, StoreError, QueryError, UserError, ValueError, OSError)


def friendly_errors(command: Callable) -> Callable:
    """Print expected failures as one clear message and exit non-zero, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except EXPECTED_ERRORS as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def settings_from(**flags: Any) -> Settings:
    return load_settings({k: v for k, v in flags.items() if v is not None})


def _progress() -> Progress:
    return Progress(TextColumn("[bold]indexing"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"),
                    TimeRemainingColumn(), console=err, transient=False, disable=not err.is_terminal)


def _install_interrupt(stop) -> None:
    """First Ctrl-C: finish the current batch and stop cleanly. Second: stop now."""

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        err.print("[yellow]stopping after the current batch (Ctrl-C again to abort)[/]")

    signal.signal(signal.SIGINT, handler)


@app.command()
@friendly_errors
def index(
    paths: Annotated[list[Path], typer.Argument(help="Folders, image files, or CSV files with id,path,label columns.")],
    db: DbOpt = None, token: TokenOpt = None, collection: CollectionOpt = None, model: ModelOpt = None,
    threads: ThreadsOpt = None, precision: PrecisionOpt = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Images per model call.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Decoding threads (0: auto).")] = None,
    delete: Annotated[bool, typer.Option("--delete/--no-delete", help="Remove images whose files vanished.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Keep running and sync changes as they happen.")] = False,
) -> None:
    """Embed new and changed images and store them in Milvus (re-runs only touch what changed)."""
    from .indexer import Indexer
    from .workspace import open_workspace

    settings = settings_from(db=db, token=token, collection=collection, model=model, threads=threads,
                             precision=precision, batch_size=batch_size, workers=workers)
    ws = open_workspace(settings, create=True)
    try:
        indexer = Indexer(ws.store, ws.embedder, batch_size=settings.batch_size, workers=settings.workers,
                          max_pixels=settings.max_pixels, max_file_bytes=settings.max_file_bytes)
        _install_interrupt(indexer.stop)
        with _progress() as bar:
            task = bar.add_task("index", total=None, rate="")

            def on_progress(done: int, total: int) -> None:
                if done == 0:
                    err.print(f"reading {total} new or changed images ({ws.embedder.model_id}, "
                              f"{ws.embedder.variant})", highlight=False)
                elapsed = bar.tasks[0].elapsed or 1e-9
                bar.update(task, completed=done, total=total, rate=f"{done / elapsed:6.1f} img/s")

            report = indexer.run(paths, delete=delete, progress=on_progress)
        _print_report(report, as_json)
        if not as_json:
            _suggest_quantize(ws, report.embedded, paths)
        if watch and not report.interrupted:
            from .watch import watch as watch_folders

            err.print(f"watching {', '.join(map(str, paths))} for changes (Ctrl-C to stop)")
            watch_folders(indexer, [str(p) for p in paths if p.is_dir()],
                          on_report=lambda r: _print_report(r, as_json))
            return
    finally:
        ws.close()
    if report.interrupted:
        raise typer.Exit(130)


QUANTIZE_HINT_IMAGES = 500
"""An fp32 run that embeds at least this many images suggests `pixsearch quantize`."""


def _suggest_quantize(ws, embedded: int, paths: list[Path]) -> None:
    """After a big fp32 run, point at the INT8 variant (measured and verified on this machine)."""
    import shlex

    embedder = ws.embedder
    if embedded < QUANTIZE_HINT_IMAGES or embedder.variant != "fp32" or "int8" in embedder.available_variants:
        return
    folder = next((p for p in paths if p.is_dir()), None)
    command = (f"pixsearch quantize --model {shlex.quote(str(ws.model))} "
               f"--images {shlex.quote(str(folder)) if folder else 'SOME_PHOTOS'}")
    err.print(f"tip: `{command}` makes an INT8 variant and checks it against fp32 on this machine; where it "
              "agrees, indexing typically runs 1.5-2x faster and `--precision auto` uses it",
              markup=False, highlight=False, soft_wrap=True)


def _print_report(report, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps({**{k: v for k, v in vars(report).items() if k != "skipped"},
                                       "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
                                       "images_per_second": report.images_per_second}))
        return
    for path, reason in report.skipped:
        err.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False, soft_wrap=True)
    console.print(report.summary(), highlight=False)


def _print_hits(hits, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps([{"id": h.id, "score": round(h.score, 6), **h.fields} for h in hits]))
        return
    if not hits:
        console.print("no results")
        return
    table = Table(show_header=True, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("path", overflow="fold")
    table.add_column("label")
    for rank, hit in enumerate(hits, start=1):
        table.add_row(str(rank), f"{hit.score:.4f}", hit.path, hit.fields.get("label", ""))
    console.print(table)


@app.command()
@friendly_errors
def search(
    query: Annotated[str | None, typer.Argument(help="Words describing the picture, in the model's language(s).")] = None,
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
    from .search import Searcher
    from .workspace import open_workspace

    given = [x is not None for x in (query, image, like)]
    if sum(given) != 1:
        raise UserError("give exactly one of: a text QUERY, --image FILE, or --like ID")
    settings = settings_from(db=db, token=token, collection=collection, model=model, threads=threads,
                             precision=precision)
    ws = open_workspace(settings)
    try:
        searcher = Searcher(ws.store, ws.embedder)
        filters = Filters(folder=os.path.abspath(os.path.expanduser(folder)) if folder else "", label=label or "",
                          min_score=min_score)
        if query is not None:
            hits = searcher.by_text(query, k, filters)
        elif image is not None:
            try:
                data = image.read_bytes()
            except OSError as exc:
                raise UserError(f"cannot read --image {image}: {exc.strerror or exc}") from exc
            hits = searcher.by_image(data, k, filters)
        else:
            hits = searcher.by_id(like, k, filters)
    finally:
        ws.close()
    _print_hits(hits, as_json)


@app.command()
@friendly_errors
def stats(
    db: DbOpt = None, token: TokenOpt = None,
    skipped: Annotated[bool, typer.Option("--skipped", help="List the files that could not be indexed, and why.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show the collections in a database: model, dimension, number of images."""
    from .store import SkipLog, Store

    settings = settings_from(db=db, token=token)
    with Store(settings.db, token=settings.token) as store:
        infos = store.collections()
        skips = {}
        for info in infos if skipped else []:
            skips[info.name] = sorted(SkipLog(store, info.name).rows().values(), key=lambda r: r["path"])
    if skipped:
        _print_skips(skips, as_json)
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


def _print_skips(skips: dict[str, list[dict]], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps({name: [{k: r[k] for k in ("path", "size", "mtime", "reason")} for r in rows]
                                       for name, rows in skips.items()}))
        return
    for name, rows in skips.items():
        console.print(f"[bold]{name}[/]: {len(rows)} skipped files (retried when they change)")
        for row in rows:
            console.print(f"  {row['path']}: {row['reason']}", highlight=False, soft_wrap=True)


@app.command()
@friendly_errors
def remove(
    path: Annotated[str, typer.Argument(help="A file or folder: every indexed image at or under it is removed.")],
    db: DbOpt = None, token: TokenOpt = None, collection: CollectionOpt = None, model: ModelOpt = None,
) -> None:
    """Remove images from the index (the files themselves are not touched)."""
    from .indexer import remove_under
    from .workspace import open_collection

    settings = settings_from(db=db, token=token, collection=collection, model=model)
    store = open_collection(settings)
    try:
        removed = remove_under(store, path)
    finally:
        store.close()
    console.print(f"removed {removed} images")


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json", help="Print every field as JSON.")] = False) -> None:
    """List the pretrained models pixsearch knows by name."""
    from rich import box
    from rich.padding import Padding
    from rich.text import Text

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


@app.command()
@friendly_errors
def convert(
    source: Annotated[Path, typer.Argument(help="A transformers checkpoint folder (CLIP, SigLIP, Chinese-CLIP).")],
    output: Annotated[Path, typer.Argument(help="Folder to write the pixsearch ONNX model into.")],
) -> None:
    """Convert a transformers checkpoint to pixsearch's ONNX layout (needs the torch extra)."""
    from .models.convert import convert_checkpoint

    if output.exists() and any(output.iterdir()):
        raise UserError(f"{output} is not empty; choose a new folder")
    spec = convert_checkpoint(source, output)
    console.print(f"wrote {output} (model id {spec.model_id}, dim {spec.dim}); use it with --model {output}")


from .models.quantize import quantize_command  # noqa: E402 - registered after the core commands

app.command("quantize")(friendly_errors(quantize_command))


from .serve import serve  # noqa: E402 - imports cli's options; FastAPI/Gradio load only when it runs

app.command("serve")(serve)


from .cli_quality import eval_command, train_command  # noqa: E402 - needs the options defined above

app.command("eval")(eval_command)
app.command("train")(train_command)


def main() -> None:
    """Console entry point: Ctrl-C outside an index run ends quietly with the usual status."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
