"""OpenVINO + NNCF static INT8 of the image tower, calibrated on the user's own images.

NNCF's post-training quantization (``nncf.quantize`` with ``ModelType.TRANSFORMER``, the preset
its documentation gives for transformer models: it keeps the softmax/layer-norm paths in floating
point and quantizes the MatMuls with per-channel weights) needs a few hundred activations to
choose its scales; pixsearch feeds it the sample images autotune already verifies on, so the
ranges are those of the user's photos, not a stock data set's.

Only the image tower is quantized: indexing speed is what the build pays for, and the text tower
runs one short query at a time, where ONNX Runtime's dynamic INT8 already serves (``quantize.py``).
The text tower of the ``int8`` OpenVINO variant therefore runs the fp32 file with OpenVINO.

The quantized model is an OpenVINO IR (``image.xml`` + ``image.bin``) under pixsearch's cache,
``<cache>/variants/<model id>/openvino/int8-<source digest>/``: the digest names the fp32 files it
was made from, so changed model files never run a stale quantization, and the model folder is
only read.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .openvino import IMAGE_IR, int8_dir, require_openvino
from .preprocess import PreprocessConfig, to_model_input
from .spec import ModelError, ModelSpec

CALIBRATION_BATCH = 1
"""One image per calibration input: NNCF's statistics are per sample, and the IR keeps a dynamic batch."""
Log = Callable[[str], None]
log = logging.getLogger(__name__)


def calibration_inputs(crops: Sequence[np.ndarray], cfg: PreprocessConfig) -> list[np.ndarray]:
    """The model inputs NNCF collects its statistics on: each crop as a normalised 1x3xHxW batch."""
    return [to_model_input(crops[i:i + CALIBRATION_BATCH], cfg) for i in range(0, len(crops), CALIBRATION_BATCH)]


def build_int8_image(spec: ModelSpec, cache_dir: Path, crops: Sequence[np.ndarray], say: Log = lambda _m: None,
                     fast_bias_correction: bool = True) -> Path:
    """Quantize *spec*'s fp32 image tower with NNCF, calibrated on *crops* (the user's images, model-sized).

    Returns the IR path. Written to a scratch folder and moved in whole, so a concurrent loader
    never sees half a model. ModelError when nncf is missing or fails on this graph.
    """
    ov = require_openvino()
    try:
        import nncf
    except ImportError as exc:
        raise ModelError("OpenVINO static INT8 needs nncf: pip install 'pixsearch[openvino]'") from exc
    if not crops:
        raise ModelError("static INT8 needs calibration images; none decoded")
    source = spec.path(spec.image.file)
    if not source.is_file():
        raise ModelError(f"model file missing: {source}")
    target = int8_dir(spec, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    inputs = calibration_inputs(crops, spec.preprocess)
    say(f"openvino-int8: calibrating NNCF static INT8 on {len(inputs)} of your images")
    model = ov.Core().read_model(str(source))
    name = model.inputs[0].any_name
    dataset = nncf.Dataset(inputs, lambda batch: {name: batch})
    chatter = io.StringIO()  # NNCF draws rich progress bars on stdout; the models layer never prints
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            quantized = nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER,
                                      subset_size=len(inputs), fast_bias_correction=fast_bias_correction)
    except (RuntimeError, ValueError, nncf.ValidationError) as exc:
        raise ModelError(f"NNCF could not quantize {source.name}: {exc}") from exc
    work = Path(tempfile.mkdtemp(prefix=".int8-", dir=target.parent))
    try:
        ov.save_model(quantized, str(work / IMAGE_IR), compress_to_fp16=False)
        shutil.rmtree(target, ignore_errors=True)
        work.replace(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target / IMAGE_IR


def quantized_ops(path: Path) -> int:
    """FakeQuantize (or FakeConvert) nodes in an IR: 0 means NNCF quantized nothing."""
    ov = require_openvino()
    model: Any = ov.Core().read_model(str(path))
    return sum(1 for op in model.get_ops() if op.get_type_name() in ("FakeQuantize", "FakeConvert"))
