"""``pixsearch eval`` and ``pixsearch train``: flag parsing and printing.

The work is in ``quality.eval`` and ``quality.train``, imported when a command runs: they pull numpy-heavy
(and, for training, torch) code that no other command needs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..config import DEFAULT_MODEL
from .common import DbOpt, PrecisionOpt, ThreadsOpt, TokenOpt, UserError, console, err, friendly_errors, settings_from

if TYPE_CHECKING:
    from ..quality.trainkit import EpochTiming, Reporter

TemplateOpt = Annotated[list[str] | None, typer.Option(
    "--template", help="Prompt template for label names, with {label}; repeat for several. "
                       "Default: 'a photo of a {label}'. Any language works if the model reads it.")]
SplitOpt = Annotated[str | None, typer.Option("--split", help="Only CSV rows whose 'split' column has this value.")]


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _metric_rows(result: dict[str, Any]) -> list[tuple[str, list[Any], object]]:
    """(metric name, value per model, chance) rows of the summary table."""
    models, ks, chance = result["models"], result["ks"], result["chance"]
    rows: list[tuple[str, list[Any], object]] = []
    names = [f"recall@{k}" for k in ks] + ["median_rank"] if result["kind"] == "captions" else \
        [f"precision@{k}" for k in ks] + ["map"]
    for source in ("ann", "exact"):
        if source == "exact" and "exact" not in models[0]:
            continue
        tag = "" if source == "ann" else " (exact)"
        for name in names:
            rows.append((name + tag, [m[source].get(name) for m in models], chance.get(name)))
        if result["kind"] == "labels":
            for k in ks:
                rows.append((f"image→image precision@{k}{tag}",
                             [m[source]["image_to_image"][f"precision@{k}"] for m in models],
                             chance.get("image_to_image_precision")))
    if "ann_recall" in models[0]:
        for name in models[0]["ann_recall"]:
            rows.append((f"ANN vs exact {name}", [m["ann_recall"][name] for m in models], None))
    rows.append(("images indexed", [m["images"] for m in models], None))
    rows.append(("index seconds", [m["index_seconds"] for m in models], None))
    return rows


def print_eval(result: dict[str, Any]) -> None:
    """Models side by side: one column each, plus what chance would score."""
    kind = "text-to-image recall" if result["kind"] == "captions" else "label-prompt retrieval"
    table = Table(title=f"{kind} on {result['dataset']} ({result['images']} images)", header_style="bold")
    table.add_column("metric")
    for m in result["models"]:
        table.add_column(Path(m["model"]).name or m["model"], justify="right")
    table.add_column("chance", justify="right", style="dim")
    for name, values, chance in _metric_rows(result):
        table.add_row(name, *[_fmt(v) for v in values], _fmt(chance))
    console.print(table)
    if result["kind"] == "labels":
        k = max(result["ks"])
        per = Table(title=f"precision@{k} per label", header_style="bold")
        per.add_column("label")
        for m in result["models"]:
            per.add_column(Path(m["model"]).name or m["model"], justify="right")
        per.add_column("chance", justify="right", style="dim")
        for label in result["labels"]:
            per.add_row(label, *[_fmt(m["ann"]["per_label"].get(label, {}).get(f"precision@{k}"))
                                 for m in result["models"]], _fmt(result["label_chance"][label]))
        console.print(per)
    if result["models"] and "cut" in result["models"][0]:
        console.print(cut_table(result))
    for m in result["models"]:
        for item in m["skipped"][:10]:
            err.print(f"[yellow]skipped[/] {item['path']}: {item['reason']}", highlight=False, soft_wrap=True)


def cut_table(result: dict[str, Any]) -> Table:
    """Per model, the relevance cut's mean precision/recall/F1 per label prompt next to the best fixed
    --min-score chosen in hindsight (and the per-query oracle)."""
    table = Table(title="relevance cut: mean per prompt (relevant = same label)", header_style="bold")
    for name in ("model", "cut", "precision", "recall", "F1", "kept", "threshold"):
        table.add_column(name, justify="left" if name in ("model", "cut") else "right")
    for m in result["models"]:
        cut = m.get("cut") or {}
        for method, row in cut.get("methods", {}).items():
            name = f"{method} (= auto)" if method == cut["auto"] else method
            table.add_row(Path(m["model"]).name or m["model"], name, _fmt(row["precision"]), _fmt(row["recall"]),
                          _fmt(row["f1"]), f"{row['kept']:.1f}", _fmt(row.get("threshold")))
    return table


@friendly_errors
def eval_command(
    data: Annotated[Path, typer.Argument(help="Captions JSONL ({\"image\": path, \"captions\": [...]}), a folder "
                                              "with a sub-folder per label, or a CSV with path,label columns.")],
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Model to evaluate; repeat to compare "
                                                                              "several side by side.")] = None,
    db: DbOpt = None, token: TokenOpt = None,
    exact: Annotated[bool, typer.Option("--exact", help="Also rank by brute force and report the ANN index's "
                                                        "recall against it.")] = False,
    template: TemplateOpt = None, split: SplitOpt = None,
    k: Annotated[list[int] | None, typer.Option("--k", help="Cut-offs for recall/precision; repeatable.")] = None,
    chart: Annotated[Path | None, typer.Option("--chart", help="PNG chart path (default: eval-<data>.png).")] = None,
    no_chart: Annotated[bool, typer.Option("--no-chart", help="Do not write a chart.")] = False,
    threads: ThreadsOpt = None, precision: PrecisionOpt = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Images per model call.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Measure retrieval quality (Recall@k, precision@k, mAP) through the real index and search path."""
    from ..quality.chart import save_chart
    from ..quality.eval import DEFAULT_KS, DEFAULT_TEMPLATES, run_eval

    settings = settings_from(token=token, threads=threads, precision=precision, batch_size=batch_size)
    models = model or [settings.model or DEFAULT_MODEL]
    with Progress(TextColumn("[bold]indexing {task.fields[model]}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True, disable=not err.is_terminal) as bar:
        tasks: dict[str, TaskID] = {}

        def on_progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task("index", total=total, model=Path(name).name or name)
            bar.update(tasks[name], completed=done, total=total)

        result = run_eval(data, models, settings, db=db, templates=tuple(template or DEFAULT_TEMPLATES),
                          ks=tuple(k or DEFAULT_KS), exact=exact, split=split, progress=on_progress)
    if not no_chart:
        path = chart or Path(f"eval-{data.stem or data.name}.png")
        result["chart"] = str(save_chart(result, path))
    if as_json:
        console.print_json(json.dumps(result))
        return
    print_eval(result)
    if "chart" in result:
        console.print(f"chart: {result['chart']}", highlight=False)


def _bar_reporter(bar: Progress) -> Reporter:
    """A training Reporter that draws ``pixsearch train`` progress on stderr.

    Built here, not at import: the training kit loads only when ``train`` runs."""
    from ..quality.trainkit import Reporter

    class BarReporter(Reporter):
        def __init__(self) -> None:
            self.task = bar.add_task("train", total=None, status="decoding images")

        def start(self, total_steps: int, done: int) -> None:
            bar.update(self.task, total=total_steps, completed=done, status="")

        def step(self, loss: float, epoch: int) -> None:
            bar.update(self.task, advance=1, status=f"epoch {epoch} loss {loss:.3f}")

        def epoch(self, epoch: int, loss: float, val_score: float | None, improved: bool,
                  timing: EpochTiming | None = None) -> None:
            score = "-" if val_score is None else f"{val_score:.3f}"
            pace = "" if timing is None else f", {timing.seconds:.0f}s, ETA {_minutes(timing.eta)} at most"
            bar.console.print(f"epoch {epoch}: loss {loss:.4f}, validation recall {score}{pace}"
                              + ("  [green]saved[/]" if improved else ""), highlight=False)

        def decoding(self, done: int, total: int) -> None:
            bar.update(self.task, status=f"decoding images {done}/{total}")

        def message(self, text: str) -> None:
            bar.console.print(text, highlight=False, soft_wrap=True)

    return BarReporter()


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f}s"


@friendly_errors
def train_command(
    data: Annotated[Path, typer.Argument(help="Captions JSONL, a folder with a sub-folder per label, or a CSV "
                                              "with path,label columns.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the trained model (use it as --model).")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="transformers checkpoint to fine-tune: a "
                                                 "folder, hf-hub:owner/repo, or a registry name of one.")] = None,
    from_scratch: Annotated[str | None, typer.Option("--from-scratch", help="Train a new CLIP: preset tiny, "
                                                        "small, vit-b-32, vit-b-16, or a CONFIG.json.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Default 40 from scratch, 10 fine-tuning "
                                                                "(early stopping usually ends sooner).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Pairs per step (more negatives help).")] = 64,
    lr: Annotated[float | None, typer.Option("--lr", help="Default 1e-5 fine-tuning, 1e-3 from scratch.")] = None,
    image_size: Annotated[int | None, typer.Option("--image-size", help="Input size (--from-scratch).")] = None,
    freeze_image: Annotated[bool, typer.Option("--freeze-image", help="Keep the image tower fixed.")] = False,
    freeze_text: Annotated[bool, typer.Option("--freeze-text", help="Keep the text tower fixed.")] = False,
    val_split: Annotated[float, typer.Option("--val-split", help="Share of images held out for validation.")] = 0.1,
    patience: Annotated[int | None, typer.Option("--patience", help="Stop after N epochs without better "
                                                 "validation recall (0: never; default 8 from scratch, 3 "
                                                 "fine-tuning).")] = None,
    template: TemplateOpt = None, split: SplitOpt = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Random resized crops, flips and "
                                                                       "colour jitter.")] = True,
    restart: Annotated[bool, typer.Option("--restart", help="Discard an interrupted run in --output and "
                                                            "start over.")] = False,
    threads: Annotated[int | None, typer.Option("--threads", help="torch threads (0: all cores).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the training report as JSON.")] = False,
) -> None:
    """Fine-tune a CLIP-family model, or train one from scratch (Ctrl-C saves; re-running resumes)."""
    from ..quality.defaults import TRAIN_TEMPLATES
    from ..quality.train import TrainInterrupted, TrainOptions, train

    if bool(model) == bool(from_scratch):
        raise UserError("give exactly one of --model CHECKPOINT (fine-tune) or --from-scratch PRESET")
    settings = settings_from()
    options = TrainOptions(data=data, output=output, model=model, from_scratch=from_scratch,
                           templates=tuple(template or TRAIN_TEMPLATES), split=split, epochs=epochs,
                           batch_size=batch_size, lr=lr, image_size=image_size, freeze_image=freeze_image,
                           freeze_text=freeze_text, val_split=val_split, patience=patience, seed=seed,
                           augment=augment, restart=restart, threads=threads or 0,
                           cache_dir=Path(settings.cache_dir).expanduser())
    with Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[status]}"), console=err, disable=not err.is_terminal) as bar:
        try:
            report = train(options, _bar_reporter(bar))
        except TrainInterrupted as exc:
            err.print(f"[yellow]{exc}[/]", highlight=False)
            raise typer.Exit(130) from None
    if as_json:
        console.print_json(json.dumps(report))
        return
    best = report["best_val_score"]
    seconds = sum(h["seconds"] for h in report["history"])
    console.print(f"model in {output} (model id {report['model_id']}): best validation recall "
                  f"{'-' if best is None else f'{best:.3f}'} after {len(report['history'])} epochs in "
                  f"{_minutes(seconds)}. Use it: pixsearch index PHOTOS --model {output}", highlight=False)

