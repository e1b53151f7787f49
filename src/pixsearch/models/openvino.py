"""OpenVINO backend (the ``openvino`` extra): the same ONNX towers, compiled by OpenVINO for the CPU.

Only how a tower opens differs from ``OnnxEmbedder``: preprocessing, tokenizer, batching and
normalisation are inherited, so both backends return the same vectors for the same files.
OpenVINO reads the ONNX files directly (``Core.read_model``); its compiled blobs go to
OpenVINO's model cache under pixsearch's cache dir (``<cache>/variants/<model id>/openvino``),
never into the model folder, so a second load skips compilation.

Precision is an OpenVINO *hint*, not a new file: ``fp32`` compiles with
``INFERENCE_PRECISION_HINT=f32`` (exact), ``bf16`` with ``bf16`` (the CPU must have avx512_bf16
or AMX; OpenVINO picks bf16 by default there, which is why fp32 asks for f32 explicitly).
``autotune`` measures and verifies bf16 against ONNX Runtime fp32 before ``auto`` ever runs it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .onnx import Array, OnnxEmbedder, _Tower, default_threads
from .spec import ModelError, ModelSpec, Tower
from .variants import overlay_dir, source_of

INSTALL_HINT = "pip install 'pixsearch[openvino]'"
PRECISIONS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
"""pixsearch variant name -> OpenVINO inference precision hint (int8: the static INT8 IR ``nncf_int8`` builds;
what it leaves in floating point runs f32).
"""
IMAGE_IR = "image.xml"
_TYPES = {"i64": "tensor(int64)", "i32": "tensor(int32)", "f32": "tensor(float)", "f16": "tensor(float16)"}


def require_openvino() -> ModuleType:
    """The openvino module, or a ModelError saying how to install the extra."""
    try:
        return importlib.import_module("openvino")
    except ImportError as exc:
        raise ModelError(f"the OpenVINO backend needs the openvino extra: {INSTALL_HINT}") from exc


def openvino_available() -> bool:
    """Whether ``--backend auto`` may measure OpenVINO here."""
    try:
        require_openvino()
    except ModelError:
        return False
    return True


def openvino_version() -> str | None:
    try:
        return str(require_openvino().__version__)
    except ModelError:
        return None


def cache_dir_for(cache_dir: Path, model_id: str) -> Path:
    """Where OpenVINO keeps the compiled towers of *model_id*: pixsearch's cache, never the model folder."""
    return overlay_dir(cache_dir, model_id) / "openvino"


def int8_dir(spec: ModelSpec, cache_dir: Path) -> Path:
    """Where the static INT8 IR of *spec*'s current fp32 image tower lives (may not exist yet)."""
    digest = hashlib.blake2b(json.dumps(source_of(spec), sort_keys=True).encode(), digest_size=6).hexdigest()
    return cache_dir_for(Path(cache_dir).expanduser(), spec.model_id) / f"int8-{digest}"


def int8_image_file(spec: ModelSpec, cache_dir: Path) -> Path | None:
    """The static INT8 image tower already built for *spec*'s current files, or None."""
    try:
        path = int8_dir(spec, cache_dir) / IMAGE_IR
    except OSError:  # a tower file is missing: the embedder says so when it opens it
        return None
    return path if path.is_file() and path.with_suffix(".bin").is_file() else None


def compile_config(threads: int, precision: str) -> dict[str, Any]:
    """Properties for ``Core.compile_model``.

    LATENCY: pixsearch makes one synchronous call per batch, and THROUGHPUT splits the cores into
    streams of which a single call uses one (measured slower here, see the README).
    """
    import openvino.properties as props
    import openvino.properties.hint as hint

    return {props.inference_num_threads(): threads or default_threads(),
            hint.performance_mode(): hint.PerformanceMode.LATENCY,
            hint.inference_precision(): PRECISIONS[precision]}


class OpenVinoEmbedder(OnnxEmbedder):
    """Runs a ModelSpec's fp32 ONNX towers with OpenVINO on the CPU (``precision``: fp32 or bf16)."""

    def __init__(self, spec: ModelSpec, cache_dir: Path | str, threads: int = 0, precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise ModelError(f"the OpenVINO backend runs {' or '.join(PRECISIONS)}, not {precision!r}; "
                             "use --precision fp32 or auto, or --backend onnxruntime for ONNX Runtime's int8")
        self._ov = require_openvino()
        super().__init__(spec, threads=threads, variant="fp32")
        self.variant = precision
        self.cache_dir = Path(cache_dir).expanduser()
        self.compiled_cache = cache_dir_for(self.cache_dir, spec.model_id)

    def _file(self, tower: Tower) -> Path:
        if tower == "image" and self.variant == "int8":
            built = int8_image_file(self.spec, self.cache_dir)
            if built is None:
                raise ModelError(f"{self.model_id}: no OpenVINO static INT8 image tower built on this machine; "
                                 "index with --precision auto (it builds and verifies one) or use --precision fp32")
            return built
        return self.spec.path(self.spec.tower_file(tower, "fp32"))

    def _open_tower(self, tower: Tower) -> _Tower:
        path = self._file(tower)
        if not path.is_file():
            raise ModelError(f"model file missing: {path}")
        core = self._ov.Core()
        self.compiled_cache.mkdir(parents=True, exist_ok=True)
        core.set_property({"CACHE_DIR": str(self.compiled_cache)})
        compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                      compile_config(self.threads, self.variant))
        wanted = self.spec.image.output if tower == "image" else self.spec.text.output
        output = next((o for o in compiled.outputs if wanted in o.get_names()), compiled.outputs[0])
        inputs = {port.any_name: _TYPES.get(port.get_element_type().get_type_name(), "tensor(float)")
                  for port in compiled.inputs}
        first = compiled.inputs[0].get_partial_shape()[0]
        local = threading.local()  # an infer request is not thread-safe; one per calling thread

        def call(feed: dict[str, Array]) -> Array:
            request = getattr(local, "request", None)
            if request is None:
                request = local.request = compiled.create_infer_request()
            result = request.infer(feed)
            return np.array(result[output], dtype=np.float32)

        fixed = first.get_length() if first.is_static else None
        return _Tower(inputs=inputs, call=call, fixed_batch=fixed if fixed and fixed > 0 else None)
