"""What every command shares: option types, the two consoles, ``UserError`` and the error decorator.

Nothing here imports a command module, so any command module imports on its own.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..config import Settings, load_settings
from ..errors import PixsearchError

console = Console()
"""Results: what scripts read (stdout)."""
err = Console(stderr=True)
"""Progress, warnings, skips and errors (stderr)."""
# pymilvus logs every failed RPC with a traceback; pixsearch reports failures itself, in one line.
logging.getLogger("pymilvus").setLevel(logging.CRITICAL)

DbOpt = Annotated[str | None, typer.Option(
    "--db", help="Milvus URI: a file (Milvus Lite) or http://host:19530. Env: PIXSEARCH_DB.")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="Milvus token for a server. Env: PIXSEARCH_TOKEN.")]
CollectionOpt = Annotated[str | None, typer.Option("--collection", help="Collection name (default: one per model).")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="Registry name, hf-hub:owner/repo or a model folder. Env: PIXSEARCH_MODEL.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="ONNX Runtime threads (0: auto).")]
PrecisionOpt = Annotated[str | None, typer.Option("--precision", help=(
    "auto (default): the fastest variant verified against fp32 on this machine, measured once on the first "
    "big index of a model; fp32 or int8 force one. Env: PIXSEARCH_PRECISION."))]
BackendOpt = Annotated[str | None, typer.Option("--backend", help=(
    "Inference backend: auto (default), onnxruntime or openvino (pip install 'pixsearch[openvino]'). "
    "Env: PIXSEARCH_BACKEND."))]

EXIT_OK = 0
EXIT_NOTHING_INDEXED = 1
"""index: the run found files but indexed none of them (every one failed)."""
EXIT_USAGE = 2
"""Nothing done: bad flags, a missing path, a config, model or database error."""
EXIT_INTERRUPTED = 130
"""Ctrl-C: what was written before it stays; a re-run finishes the job."""
EXIT_CODES_HELP = ("Exit status: 0 done; 1 nothing indexed (every file found failed); 2 nothing done "
                   "(bad flags, a missing or unlistable path, a config, model or database error); 130 interrupted.")


class UserError(PixsearchError):
    """Anything the user can fix; printed as one line, no traceback."""


P = ParamSpec("P")
R = TypeVar("R")


def print_error(message: str) -> None:
    """One line on stderr, never wrapped: scripts and people read it whole."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def friendly_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print pixsearch's own errors as one clear message and exit 2; anything else is a bug
    and keeps its traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except PixsearchError as exc:
            print_error(str(exc))
            raise typer.Exit(EXIT_USAGE) from None

    return wrapper


def settings_from(**flags: Any) -> Settings:
    """Settings for this run: the flags that were given override file and environment."""
    return load_settings({k: v for k, v in flags.items() if v is not None})
