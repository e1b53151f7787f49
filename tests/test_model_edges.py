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

from pixsearch.models import REGISTRY, ModelUnavailable, load_spec
from pixsearch.models.loader import hub_cli, pick_hub_cli

from .conftest import run_cli

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
