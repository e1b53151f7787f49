"""The one check for the optional ``torch`` extra (torch + transformers).

Serving never needs it. Converting a transformers checkpoint to ONNX, making a
random CLIP (``--from-scratch``, the benchmarks' models) and ``pixsearch train`` do;
they all call ``require_torch`` first, so a missing extra reads the same everywhere.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .spec import ModelError

INSTALL_HINT = ("pip install 'pixsearch[torch]' (CPU torch 2.13.0; a CUDA build of torch is used when "
                "installed), then run the command again")


def require_torch(purpose: str) -> ModuleType:
    """The torch module, or a ModelError saying that *purpose* needs the extra and how to install it.

    transformers is imported too (every use of torch here goes through it), and its
    download progress bars are turned off: pixsearch reports progress itself.
    """
    try:
        torch = importlib.import_module("torch")
        transformers = importlib.import_module("transformers")
    except ImportError as exc:
        raise ModelError(f"{purpose} needs the torch extra: {INSTALL_HINT}") from exc
    transformers.utils.logging.disable_progress_bar()
    return torch
