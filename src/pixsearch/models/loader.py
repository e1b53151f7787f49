"""Find a model by name, registry entry, hub repository or local directory, and load it.

``--model`` accepts:
* a registry name (``pixsearch models`` lists them), fetched from the Hugging Face Hub once;
* ``hf-hub:owner/repo`` for any hub repository in a layout pixsearch reads;
* a local directory (pixsearch, Immich, transformers.js or transformers layout).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from .autotune import Decision, machine_fingerprint, read_decision
from .candidates import check_backend
from .convert import convert_cached
from .onnx import OnnxEmbedder
from .ref import ModelRef, parse_model_ref
from .spec import Layout, ModelError, ModelSpec, Precision, detect_layout, read_pixsearch_dir
from .thirdparty import read_immich_dir, read_transformersjs_dir
from .variants import with_overlay

_CONFIG_FILES = ["*.json", "*.txt", "*.model"]
HUB_CLI_NAMES = ("hf", "huggingface-cli")
"""Console scripts huggingface_hub has shipped, newest first (1.0 dropped ``huggingface-cli``)."""


class ModelUnavailable(ModelError):
    """Weights could not be obtained (offline, unknown repository, ...)."""


def hub_patterns(layout: Layout | None) -> tuple[list[str] | None, list[str]]:
    """(allow, ignore) file patterns: fetch what the layout uses, not every variant in the repo."""
    if layout == "immich":  # big text towers keep their weights as loose files beside model.onnx
        return None, ["*.armnn", "*.rknn", "*/fp16/*", "*/rknpu/*", "README.md"]
    if layout == "transformers.js":
        towers = [f"onnx/{t}_model.{ext}" for t in ("vision", "text") for ext in ("onnx", "onnx_data")]
        return _CONFIG_FILES + towers, []
    if layout == "transformers":
        return [*_CONFIG_FILES, "*.safetensors"], []
    return None, []


def pick_hub_cli(scripts: Iterable[str]) -> str:
    """The newest hub CLI among the console scripts *scripts* (``hf`` when none is known)."""
    declared = set(scripts)
    return next((cli for cli in HUB_CLI_NAMES if cli in declared), HUB_CLI_NAMES[0])


def hub_cli() -> str:
    """The command the installed huggingface_hub provides, so the advice we print can be run as is.

    Read from the package's declared console scripts rather than hard-coded: the name
    changed once (``huggingface-cli`` -> ``hf``) and older installs only have the old one.
    """
    try:
        entry_points = metadata.distribution("huggingface_hub").entry_points
    except metadata.PackageNotFoundError:
        return HUB_CLI_NAMES[0]
    return pick_hub_cli(ep.name for ep in entry_points if ep.group == "console_scripts")


def _hub_failures() -> tuple[type[BaseException], ...]:
    """What a hub download raises when the model cannot be had (missing from the cache, offline, not found,
    gated, a bad repository name, a network error): huggingface_hub's errors are ``OSError``s or
    ``ValueError``s; the HTTP client's transport errors are not, so they are named here. Anything else
    is a bug and keeps its traceback."""
    failures: tuple[type[BaseException], ...] = (OSError, ValueError)
    try:
        import httpx
    except ImportError:  # pragma: no cover - huggingface_hub depends on it
        return failures
    return (*failures, httpx.HTTPError)


def download(name: str, repo: str, cache_dir: Path, layout: Layout | None = None) -> Path:
    """Local snapshot of hub *repo*: from the cache when present, else downloaded."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - a dependency of pixsearch
        raise ModelUnavailable("huggingface_hub is not installed: pip install huggingface_hub") from exc
    allow, ignore = hub_patterns(layout)
    hub = cache_dir / "hub"
    failures = _hub_failures()
    try:
        return Path(snapshot_download(repo, local_files_only=True, cache_dir=hub, allow_patterns=allow,
                                      ignore_patterns=ignore or None))
    except failures:
        pass  # not cached yet: download it
    try:
        return Path(snapshot_download(repo, cache_dir=hub, allow_patterns=allow, ignore_patterns=ignore or None))
    except failures as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelUnavailable(
            f"model {name!r} is not available here: downloading https://huggingface.co/{repo} failed "
            f"({reason}).\nOn a machine with network access run `{hub_cli()} download {repo} "
            f"--local-dir DIR`, copy DIR here and pass `--model DIR` (or set PIXSEARCH_MODEL=DIR)."
        ) from exc


def fetch_model_dir(ref: ModelRef, cache_dir: Path, layout: Layout | None = None) -> Path:
    """The local directory holding the model *ref* names, downloading hub files once.

    *layout*: the layout the caller needs (training: ``transformers``); by default a
    registry entry's own layout, and every file of a plain hub repository.
    """
    if ref.path is not None:
        return ref.path
    if ref.repo is None:  # pragma: no cover - parse_model_ref sets a path or a repo
        raise ModelError(f"--model {ref.text!r}: neither a folder nor a hub repository")
    if layout is None and ref.known is not None:
        layout = ref.known.layout
    return download(ref.text, ref.repo, cache_dir, layout)


def resolve_model_dir(name: str, cache_dir: Path) -> tuple[Path, str | None]:
    """The local directory holding model *name*, and the model id to record (None: from the files)."""
    ref = parse_model_ref(name)
    return fetch_model_dir(ref, cache_dir), ref.model_id


def load_spec(name: str, cache_dir: Path) -> ModelSpec:
    """The ModelSpec of model *name*, converting a transformers checkpoint once if needed.

    Its ``variants`` include those ``pixsearch quantize`` recorded in the cache's
    variants overlay for this model id (see variants.py), whatever the layout.
    """
    directory, model_id = resolve_model_dir(name, cache_dir)
    layout = detect_layout(directory)
    if layout == "transformers":
        directory = convert_cached(directory, cache_dir, model_id=model_id)
        layout = "pixsearch"
    if layout == "pixsearch":
        spec = read_pixsearch_dir(directory)
    elif layout == "immich":
        spec = read_immich_dir(directory, model_id or directory.name)
    else:
        spec = read_transformersjs_dir(directory, model_id or directory.name)
    return with_overlay(spec, cache_dir)


def choose_variant(spec: ModelSpec, precision: Precision | str, decision: Decision | None = None) -> str:
    """The variant a *precision* setting runs.

    ``auto``: what the *decision* measured on this machine chose (``autotune``), as long as that
    variant is still recorded; without a decision, int8 only when a verified variant exists
    (``pixsearch quantize``), else fp32. Besides the Precision values, the name of any variant a
    manifest declares is accepted.
    """
    if precision == "auto":
        if decision is not None and (decision.variant == "fp32" or decision.variant in spec.variants):
            return decision.variant
        int8 = spec.variants.get("int8")
        return "int8" if int8 is not None and int8.verified else "fp32"
    return precision


def machine_decision(spec: ModelSpec, cache_dir: Path, threads: int = 0) -> Decision | None:
    """The precision decision measured for *spec* on this machine (None: never measured here)."""
    return read_decision(spec, cache_dir, machine_fingerprint(threads))


def load_embedder(name: str, cache_dir: Path | str, threads: int = 0, precision: Precision | str = "auto",
                  spec: ModelSpec | None = None, backend: str = "auto") -> OnnxEmbedder:
    """Ready-to-use embedder for ``--model`` *name* (towers load lazily on first use).

    Loading never measures or builds anything: with ``auto`` it reads the decision the first
    big ``index`` recorded (``autotune``), so query-time loads stay fast. ``--backend openvino``
    runs OpenVINO (the extra); ``auto`` runs it only when that decision chose it.
    """
    check_backend(backend)
    cache = Path(cache_dir).expanduser()
    spec = spec or load_spec(name, cache)
    decision = machine_decision(spec, cache, threads) if precision == "auto" else None
    measured_faster = (decision is not None and decision.backend == "openvino"
                       and decision.variant.startswith("openvino-"))
    if backend == "openvino" or (backend == "auto" and measured_faster):
        return _openvino_embedder(spec, cache, threads, precision, decision)
    variant = choose_variant(spec, precision, decision)
    if variant != "fp32" and variant not in spec.variants:
        raise ModelError(f"model {spec.model_id!r} has no {variant} variant on this machine; run `pixsearch "
                         f"quantize --model {name} --images DIR` (or `pixsearch index` with --precision auto) "
                         f"first, or use --precision fp32")
    return OnnxEmbedder(spec, threads=threads, variant=variant)


def _openvino_embedder(spec: ModelSpec, cache: Path, threads: int, precision: str,
                       decision: Decision | None) -> OnnxEmbedder:
    """OpenVINO at the precision asked for; ``auto``: what an OpenVINO decision chose, else exact fp32."""
    from .openvino import OpenVinoEmbedder

    if precision == "auto":
        chosen = decision.variant if decision is not None and decision.backend == "openvino" else "fp32"
        precision = chosen.removeprefix("openvino-")  # a decision measured for OpenVINO: "openvino-bf16"...
    return OpenVinoEmbedder(spec, cache, threads=threads, precision=precision)
