"""The Typer app: every command group registered in one place, and the console entry point."""

from __future__ import annotations

import sys

import typer

from . import duplicates, index, models, quality, quantize, search, serve, stats
from .common import EXIT_CODES_HELP, EXIT_INTERRUPTED, err

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Search your pictures by text or by example, with CLIP models and Milvus.",
                  epilog=EXIT_CODES_HELP)

app.command("index", epilog=EXIT_CODES_HELP)(index.index)
app.command("search")(search.search)
app.command("stats")(stats.stats)
app.command("remove")(index.remove)
app.command("duplicates")(duplicates.duplicates)
app.command("models")(models.models)
app.command("convert")(models.convert)
app.command("quantize")(quantize.quantize)
app.command("serve")(serve.serve)
app.command("eval")(quality.eval_command)
app.command("train")(quality.train_command)


def main() -> None:
    """Console entry point: Ctrl-C outside an index run ends quietly with the usual status."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
