"""One settings object for every entry point (CLI, server, benchmarks).

Precedence, lowest to highest: built-in defaults < config file < ``PIXSEARCH_*``
environment variables < command-line flags. The config file is TOML, found at
``$PIXSEARCH_CONFIG``, else ``./pixsearch.toml``, else
``~/.config/pixsearch/config.toml``; its keys are the field names below.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import PixsearchError

ENV_PREFIX = "PIXSEARCH_"
DEFAULT_MODEL = "ViT-B-32__openai"


class ConfigError(PixsearchError, ValueError):
    """A setting has a value pixsearch cannot use; the message says which and why."""


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "pixsearch")


@dataclass(frozen=True)
class Settings:
    """Everything a pixsearch run can be told. Field names double as config keys."""

    db: str = "./pixsearch.db"
    """Milvus URI: a file path (embedded Milvus Lite) or http(s)://host:port."""
    token: str = ""
    """Milvus token ("user:password" or an API key) for a server."""
    collection: str = ""
    """Collection name; empty means one derived from the model id."""
    model: str = ""
    """Registry name, hf-hub:owner/repo, or a local model directory. Empty: the model of
    the database's only collection, else DEFAULT_MODEL."""
    cache_dir: str = dataclasses.field(default_factory=_default_cache_dir)
    """Where downloaded and converted models and thumbnails are kept."""
    batch_size: int = 32
    workers: int = 0
    """Image-decoding threads; 0 picks one per CPU core."""
    threads: int = 0
    """ONNX Runtime intra-op threads; 0 lets pixsearch choose."""
    precision: str = "auto"
    """fp32, int8 or auto: the fastest variant measured on this machine to agree with fp32. The first
    ``index`` of a model here with at least ``precision_min_images`` new images builds, verifies and
    times the candidates once (cached per model and machine); smaller runs use fp32."""
    backend: str = "auto"
    """Inference backend: auto, onnxruntime or openvino (``pixsearch[openvino]``). ``auto`` runs ONNX
    Runtime unless the first big ``index`` measured OpenVINO faster and verified it here."""
    precision_min_images: int = 1000
    """New images an ``index`` run needs before ``auto`` builds and measures an INT8 variant: the
    measured break-even. ViT-B/32 on a shared 2-core AMD EPYC Zen 4 (``python -m bench.auto_precision``):
    building and verifying took 41-49 s, INT8 indexed 2.0-3.0x faster (11.4-15.8 img/s fp32), so it
    pays for itself after 915-1,162 images; smaller runs would spend more on building than they save."""
    precision_min_cosine: float = 0.999
    """The per-image agreement with fp32 a variant must reach for ``auto`` (0.999 or stricter)."""
    ocr: bool = False
    """Read the text in each image (``pixsearch[ocr]``) so text queries also match it (see ``ocr``)."""
    dup_hamming: int = 12
    """``duplicates``: most differing bits of 64 between two copies' perceptual hashes (bench/duplicates.py)."""
    dup_cosine: float = 0.80
    """``duplicates``: least CLIP cosine between two copies (a veto on hash collisions)."""
    similar_cosine: float = 0.92
    """``duplicates --similar``: least CLIP cosine for a similar-but-different pair."""
    max_pixels: int = 250_000_000
    max_file_bytes: int = 256 * 1024 * 1024
    host: str = "127.0.0.1"
    port: int = 8000
    api_token: str = ""
    """When set, the REST API requires ``Authorization: Bearer <api_token>``."""

    def with_overrides(self, values: Mapping[str, Any]) -> Settings:
        """Return a copy with every non-None value in *values* applied."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if value is None:
                continue
            if key not in known:
                raise ConfigError(f"unknown setting {key!r}; known: {', '.join(sorted(known))}")
            changes[key] = _coerce(key, value, known[key].type)
        return dataclasses.replace(self, **changes)


def _coerce(key: str, value: Any, type_name: Any) -> Any:
    kind = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", "str")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"setting {key!r} wants true or false, got {value!r}")
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {key!r} wants a {kind}, got {value!r}") from exc


def config_file_path() -> Path | None:
    """The config file that applies, or None when there is none."""
    explicit = os.environ.get(ENV_PREFIX + "CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"{ENV_PREFIX}CONFIG points to {path}, which is not a file")
        return path
    for candidate in (Path("pixsearch.toml"), Path.home() / ".config" / "pixsearch" / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    section = data.get("pixsearch", data)
    return {key.replace("-", "_"): value for key, value in section.items()}


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    names = {f.name for f in fields(Settings)}
    found = {}
    for name in names:
        value = environ.get(ENV_PREFIX + name.upper())
        if value is not None:
            found[name] = value
    return found


def load_settings(cli: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings for this run from file, environment and flags."""
    settings = Settings()
    path = config_file_path()
    if path is not None:
        settings = settings.with_overrides(_read_config_file(path))
    settings = settings.with_overrides(_read_env(os.environ if environ is None else environ))
    return settings.with_overrides(cli or {})
