"""``pixsearch index`` and ``pixsearch remove``: bring the collection in line with folders, or forget a subtree."""

from __future__ import annotations

import json
import shlex
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .common import (
    EXIT_INTERRUPTED,
    EXIT_NOTHING_INDEXED,
    BackendOpt,
    CollectionOpt,
    DbOpt,
    ModelOpt,
    PrecisionOpt,
    ThreadsOpt,
    TokenOpt,
    console,
    err,
    friendly_errors,
    settings_from,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..config import Settings
    from ..indexer import Indexer, IndexReport
    from ..workspace import Workspace


def _progress() -> Progress:
    return Progress(TextColumn("[bold]indexing"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"),
                    TimeRemainingColumn(), console=err, transient=False, disable=not err.is_terminal)


class _Rate:
    """Images per second from the first written batch on, so model loading, the first batch's
    decoding and its tower warm-up do not count (it used to start while files were only decoded:
    hundreds of img/s shown for a model that embeds a dozen)."""

    def __init__(self) -> None:
        self.start: tuple[float, int] | None = None

    def text(self, done: int) -> str:
        now = time.perf_counter()
        if self.start is None:
            if done > 0:
                self.start = (now, done)
            return "measuring speed"
        began, base = self.start
        return f"{(done - base) / max(now - began, 1e-9):6.1f} img/s"


class _Stage:
    """A slow first-use step (converting, downloading): its own line, and a spinner while it runs."""

    def __init__(self) -> None:
        self.progress: Progress | None = None

    def start(self, text: str) -> None:
        err.print(text, highlight=False, soft_wrap=True)
        if err.is_terminal:
            self.progress = Progress(SpinnerColumn(), TextColumn(text.split(" (")[0]), TimeElapsedColumn(),
                                     console=err, transient=True)
            self.progress.start()
            self.progress.add_task("stage", total=None)

    def __enter__(self) -> _Stage:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def _install_interrupt(stop: threading.Event) -> None:
    """First Ctrl-C: finish the current batch and stop cleanly. Second: stop now."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        err.print("[yellow]stopping after the current batch (Ctrl-C again to abort)[/]")

    signal.signal(signal.SIGINT, handler)


@friendly_errors
def index(
    paths: Annotated[list[Path], typer.Argument(help="Folders, image files, or CSV files with id,path,label columns.")],
    db: DbOpt = None, token: TokenOpt = None, collection: CollectionOpt = None, model: ModelOpt = None,
    threads: ThreadsOpt = None, precision: PrecisionOpt = None, backend: BackendOpt = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Images per model call.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Decoding threads (0: auto).")] = None,
    delete: Annotated[bool, typer.Option("--delete/--no-delete", help="Remove images whose files vanished.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Keep running and sync changes as they happen.")] = False,
    ray: Annotated[str | None, typer.Option("--ray", help="Spread the work over Ray: 'auto' (start or join a local "
                                            "Ray) or ray://host:10001; needs pixsearch[ray] and a Milvus server; "
                                            "--workers is then the number of embedding actors.")] = None,
    cpus_per_worker: Annotated[float, typer.Option("--cpus-per-worker", help="With --ray: CPUs per actor.")] = 1.0,
) -> None:
    """Embed new and changed images and store them in Milvus (re-runs only touch what changed).

    With --precision auto (the default), the first run of a model on a machine with enough new
    images (setting precision_min_images) builds an INT8 variant, verifies it against fp32 on
    your own images, times both and keeps the faster verified one, cached per model and machine.
    """
    from ..sources import check_sources
    from ..workspace import new_indexer, open_workspace

    settings = settings_from(db=db, token=token, collection=collection, model=model, threads=threads,
                             precision=precision, backend=backend, batch_size=batch_size, workers=workers)
    check_sources(paths)  # before anything is opened: a typo must not create a database
    with _Stage() as stage:
        ws = open_workspace(settings, create=True, on_stage=stage.start)
    try:
        indexer = new_indexer(ws, settings)
        _install_interrupt(indexer.stop)
        with _progress() as bar:
            task = bar.add_task("index", total=None, rate="")
            rate = _Rate()
            tuned: list[bool] = []

            def on_stage(text: str) -> None:
                err.print(text, highlight=False, soft_wrap=True)
                bar.update(task, rate="measuring precision")

            def on_progress(done: int, total: int) -> None:
                chosen = None
                if done == 0 and not tuned:
                    tuned.append(True)
                    chosen = _choose_precision(ws, settings, indexer, total, paths, on_stage)
                if done == 0:
                    err.print(f"reading {total} new or changed images ({ws.embedder.model_id}, "
                              f"{_image_precision(ws)})", highlight=False, soft_wrap=True)
                if chosen:  # after the "reading" line, which scripts wait for as the sign the run started
                    err.print(chosen, markup=False, highlight=False, soft_wrap=True)
                bar.update(task, completed=done, total=total, rate=rate.text(done))

            if ray:
                from ..distributed.ray_index import run_on_ray

                report = run_on_ray(ws, settings, paths, address=ray, workers=settings.workers or 1,
                                    cpus_per_worker=cpus_per_worker, delete=delete, progress=on_progress)
            else:
                report = indexer.run(paths, delete=delete, progress=on_progress)
        print_report(report, as_json)
        if not as_json:
            suggest_quantize(ws, report.embedded, paths, settings.precision_min_images)
        if watch and not report.interrupted:
            from ..watch import watch as watch_folders

            err.print(f"watching {', '.join(map(str, paths))} for changes (Ctrl-C to stop)", soft_wrap=True)
            watch_folders(indexer, [str(p) for p in paths if p.is_dir()],
                          on_report=lambda r: print_report(r, as_json))
            return
    finally:
        ws.close()
    if report.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if report.nothing_indexed:
        raise typer.Exit(EXIT_NOTHING_INDEXED)


def _image_precision(ws: Workspace) -> str:
    """The variant running, and whether its image tower is in fact the fp32 file (a variant keeps fp32
    for a tower INT8 did not speed up or could not match)."""
    variant = ws.embedder.variant
    entry = ws.spec.variants.get(variant) if ws.spec is not None else None
    return f"{variant}, image tower fp32" if entry is not None and entry.image is None else variant


def _choose_precision(ws: Workspace, settings: Settings, indexer: Indexer, total: int, paths: list[Path],
                      on_stage: Callable[[str], None]) -> str | None:
    """Before the first batch: settle ``auto``'s variant (maybe measuring it); the line saying which and why."""
    from ..sources import scan_sources
    from ..workspace import auto_precision

    def samples() -> list[Path]:  # the run's own images, in scan order
        return [Path(f.path) for f in scan_sources(paths).files]

    line = auto_precision(ws, settings, total, samples, on_stage=on_stage)
    indexer.embedder = ws.embedder  # the measured variant, when measuring replaced it
    return line


def suggest_quantize(ws: Workspace, embedded: int, paths: list[Path], min_images: int) -> None:
    """After an fp32 run of at least *min_images* (``precision_min_images``: the measured break-even of
    building a variant), point at the INT8 variant; smaller runs would not win back its build time."""
    embedder = ws.embedder
    if embedded < min_images or embedder.variant != "fp32" or "int8" in embedder.available_variants:
        return
    folder = next((p for p in paths if p.is_dir()), None)
    command = (f"pixsearch quantize --model {shlex.quote(str(ws.model))} "
               f"--images {shlex.quote(str(folder)) if folder else 'SOME_PHOTOS'}")
    err.print(f"tip: `{command}` makes an INT8 variant and checks it against fp32 on this machine; where it "
              "agrees, indexing typically runs 1.5-2x faster and `--precision auto` uses it",
              markup=False, highlight=False, soft_wrap=True)


def report_json(report: IndexReport) -> dict[str, Any]:
    """The report as ``--json`` prints it."""
    return {**{k: v for k, v in vars(report).items() if k != "skipped"},
            "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
            "images_per_second": report.images_per_second}


def print_report(report: IndexReport, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(report_json(report)))
        return
    for path, reason in report.skipped:
        err.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False, soft_wrap=True)
    console.print(report.summary(), highlight=False, soft_wrap=True)  # scripts read this line: never wrapped


@friendly_errors
def remove(
    path: Annotated[str, typer.Argument(help="A file or folder: every indexed image at or under it is removed.")],
    db: DbOpt = None, token: TokenOpt = None, collection: CollectionOpt = None, model: ModelOpt = None,
) -> None:
    """Remove images from the index (the files themselves are not touched)."""
    from ..indexer import remove_under
    from ..workspace import open_collection

    settings = settings_from(db=db, token=token, collection=collection, model=model)
    store = open_collection(settings)
    try:
        removed = remove_under(store, path)
    finally:
        store.close()
    console.print(f"removed {removed} images", soft_wrap=True)
