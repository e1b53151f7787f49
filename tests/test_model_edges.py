"""Model edges: the hub CLI we advise exists, `pixsearch models` reads at 80 columns, and
checkpoints saved by transformers 5 (nested ``processor_config.json``) load."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pixsearch.models import REGISTRY, ModelError, ModelUnavailable, load_spec
from pixsearch.models.loader import hub_cli, pick_hub_cli
from pixsearch.models.spec import (
    IMAGE_PROCESSOR_FILE,
    PROCESSOR_FILE,
    hf_image_processor_file,
    read_hf_preprocess,
)

from .conftest import CAPTIONS, run_cli

# ----------------------------------------------------------------------------- the hub CLI we name


def test_pick_hub_cli_prefers_the_current_name():
    assert pick_hub_cli(["huggingface-cli", "hf"]) == "hf"  # huggingface_hub 0.34 - 0.x ship both
    assert pick_hub_cli(["huggingface-cli", "tiny-agents"]) == "huggingface-cli"  # before 0.34
    assert pick_hub_cli(["hf", "tiny-agents"]) == "hf"  # 1.0 and later
    assert pick_hub_cli([]) == "hf"


def test_hub_cli_is_a_command_the_installed_huggingface_hub_ships():
    command = hub_cli()
    script = Path(sys.executable).parent / command
    path = str(script) if script.is_file() else shutil.which(command)
    assert path, f"hub_cli() says {command!r}, but no such command is installed beside {sys.executable}"
    result = subprocess.run([path, "download", "--help"], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--local-dir" in result.stdout


def test_offline_registry_error_gives_that_command(cache_dir):
    with pytest.raises(ModelUnavailable) as info:
        load_spec("ViT-B-32__openai", cache_dir)
    message = str(info.value)
    assert f"`{hub_cli()} download immich-app/ViT-B-32__openai --local-dir DIR`" in message
    if hub_cli() == "hf":
        assert "huggingface-cli" not in message


# ----------------------------------------------------------------------------- pixsearch models


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("columns", [80, 120])
def test_models_table_shows_every_name_and_size_whole(columns):
    out = run_cli("models", env={"COLUMNS": str(columns)}).stdout
    lines = out.splitlines()
    assert "…" not in out
    assert max(len(line.rstrip()) for line in lines) <= columns
    for model in REGISTRY.values():
        rows = [line.split() for line in lines if line.split()[:1] == [model.name]]
        assert rows, f"{model.name!r} is not whole on any line at {columns} columns:\n{out}"
        assert rows[0][1:3] == [str(model.dim), f"{model.gflops_per_image:g}"], rows[0]
        for detail in (model.repo, model.summary, model.languages):  # may wrap, but nothing is cut
            assert _squeezed(detail) in _squeezed(out), detail


def test_models_json_lists_every_model():
    listed = json.loads(run_cli("models", "--json", env={"COLUMNS": "80"}).stdout)
    assert [m["name"] for m in listed] == list(REGISTRY)
    for entry in listed:
        known = REGISTRY[entry["name"]]
        assert (entry["repo"], entry["dim"], entry["summary"]) == (known.repo, known.dim, known.summary)


# ----------------------------------------------------------------------------- transformers 5 processors


@pytest.fixture(scope="module")
def nested_processor_checkpoint(tmp_path_factory) -> Path:
    """A tiny CLIP whose processor was saved by the installed transformers' CLIPProcessor.save_pretrained.

    The image processor differs from the legacy file pixsearch writes (shortest edge 40 then a
    32 crop, bilinear, own mean/std), so a reader that guessed or read the wrong file would show.
    """
    pytest.importorskip("torch", reason="the torch extra builds the test model: pip install '.[torch]'")
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPProcessor

    from pixsearch.models.scratch import new_clip_checkpoint

    directory = new_clip_checkpoint(tmp_path_factory.mktemp("models") / "tiny-clip-t5", "tiny", texts=CAPTIONS * 5)
    (directory / IMAGE_PROCESSOR_FILE).unlink()
    image_processor = CLIPImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32},
                                         resample=2, image_mean=[0.25, 0.5, 0.75], image_std=[0.2, 0.3, 0.4])
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=AutoTokenizer.from_pretrained(directory))
    processor.save_pretrained(directory)
    return directory


def test_transformers_5_saves_the_nested_layout(nested_processor_checkpoint):
    """The premise: transformers 5 writes processor_config.json with the image processor inside, alone."""
    import transformers

    if int(transformers.__version__.split(".")[0]) < 5:
        pytest.skip(f"transformers {transformers.__version__} writes the legacy layout")
    saved = json.loads((nested_processor_checkpoint / PROCESSOR_FILE).read_text())
    assert saved["image_processor"]["crop_size"] == {"height": 32, "width": 32}
    assert not (nested_processor_checkpoint / IMAGE_PROCESSOR_FILE).exists()


def test_nested_processor_checkpoint_loads_as_model_dir(nested_processor_checkpoint, cache_dir):
    """`--model DIR` converts it, and the preprocessing is what transformers itself reads back."""
    from transformers import AutoImageProcessor

    expected = AutoImageProcessor.from_pretrained(nested_processor_checkpoint, local_files_only=True)
    pre = load_spec(str(nested_processor_checkpoint), cache_dir).preprocess
    assert pre.size == (expected.crop_size["height"], expected.crop_size["width"]) == (32, 32)
    assert pre.resize == "shortest" and pre.shortest_edge == expected.size["shortest_edge"] == 40
    assert pre.mean == pytest.approx(tuple(expected.image_mean)) and pre.mean == pytest.approx((0.25, 0.5, 0.75))
    assert pre.std == pytest.approx(tuple(expected.image_std)) and pre.std == pytest.approx((0.2, 0.3, 0.4))
    assert pre.interpolation == "bilinear" and int(expected.resample) == 2


def test_legacy_layout_still_read_from_preprocessor_config(tiny_checkpoint):
    path, settings = hf_image_processor_file(tiny_checkpoint)
    assert path.name == IMAGE_PROCESSOR_FILE and settings["crop_size"] == {"height": 32, "width": 32}
    assert read_hf_preprocess(tiny_checkpoint).size == (32, 32)


def test_processor_file_choice(tmp_path):
    """Nested settings win (as in transformers' loader); a processor_config.json without them falls
    back to preprocessor_config.json; with neither, the error names both files."""
    legacy = {"size": {"shortest_edge": 64}, "crop_size": {"height": 64, "width": 64}}
    nested = {"size": {"height": 48, "width": 48}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    (tmp_path / IMAGE_PROCESSOR_FILE).write_text(json.dumps(legacy))
    (tmp_path / PROCESSOR_FILE).write_text(json.dumps({"processor_class": "CLIPProcessor"}))
    assert read_hf_preprocess(tmp_path).size == (64, 64)
    (tmp_path / PROCESSOR_FILE).write_text(json.dumps({"processor_class": "X", "image_processor": nested}))
    assert read_hf_preprocess(tmp_path).size == (48, 48) and read_hf_preprocess(tmp_path).resize == "squash"
    (tmp_path / IMAGE_PROCESSOR_FILE).unlink()
    (tmp_path / PROCESSOR_FILE).unlink()
    with pytest.raises(ModelError, match=f"{IMAGE_PROCESSOR_FILE}.*{PROCESSOR_FILE}"):
        read_hf_preprocess(tmp_path)


def test_trained_export_keeps_the_nested_processor(nested_processor_checkpoint, tmp_path):
    """`pixsearch train` re-saves a checkpoint beside its base's processor settings, in either layout."""
    from pixsearch.models.convert import load_checkpoint
    from pixsearch.quality.checkpoint import save_checkpoint_dir

    checkpoint = load_checkpoint(nested_processor_checkpoint)
    out = tmp_path / "trained"
    out.mkdir()
    save_checkpoint_dir(checkpoint.model, checkpoint.tokenizer, nested_processor_checkpoint, out)
    assert read_hf_preprocess(out) == read_hf_preprocess(nested_processor_checkpoint)


# ----------------------------------------------------------------------------- the one torch check


@pytest.fixture
def without_torch(monkeypatch):
    """Make `import torch` fail as it does where the torch extra is not installed."""
    monkeypatch.setitem(sys.modules, "torch", None)


def test_every_torch_use_names_the_extra_the_same_way(without_torch, tmp_path):
    from pixsearch.models.convert import load_checkpoint
    from pixsearch.models.extras import require_torch
    from pixsearch.models.scratch import new_clip_checkpoint
    from pixsearch.quality.train import Trainer, TrainOptions

    attempts = {
        "converting a transformers checkpoint": lambda: load_checkpoint(tmp_path),
        "making a new CLIP checkpoint": lambda: new_clip_checkpoint(tmp_path / "new"),
        "`pixsearch train`": lambda: Trainer(TrainOptions(data=tmp_path, output=tmp_path / "out")),
        "this check": lambda: require_torch("this check"),
    }
    for purpose, attempt in attempts.items():
        with pytest.raises(ModelError) as info:
            attempt()
        message = str(info.value)
        assert message.startswith(purpose) and "pip install 'pixsearch[torch]'" in message, message
    assert not (tmp_path / "new").exists() and not (tmp_path / "out").exists()
