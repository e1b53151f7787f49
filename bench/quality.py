"""Quality benchmark: train small CLIPs from scratch here, then measure them with ``pixsearch eval``.

No pretrained weights exist on this machine, so the question is whether the
training and evaluation pipeline learns and measures something real:

1. clothing: train on ``clothing/train`` (labels -> "a photo of a {label}"), then
   label-prompt precision@k / mAP and image-to-image precision on ``clothing/test``.
2. coco-mini: train on 80% of the captioned images, text-to-image Recall@k on the
   held-out 20% (generalisation; tiny data, so expect little) and on the training
   images (fit).

Every figure is reported next to chance and next to the untrained random model
(same architecture, same tokenizer, the very initial weights), in the same run.
Results: a table on stdout, JSON and PNG charts in bench/results/.

    python -m bench.quality [--epochs 25] [--coco-epochs 60] [--preset bench|tiny|small|CONFIG.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
BENCH_PRESET = {"image_size": 48, "patch_size": 8, "vision_width": 128, "vision_layers": 3, "vision_heads": 4,
                "text_width": 64, "text_layers": 2, "text_heads": 4, "embed_dim": 64, "context_length": 16}
"""Sized to train in minutes on 2 shared CPU cores (about 1/4 of the compute of the 'small' preset)."""


def _preset(name: str, tmp: Path) -> str:
    if name != "bench":
        return name
    path = tmp / "bench-preset.json"
    path.write_text(json.dumps(BENCH_PRESET), encoding="utf-8")
    return str(path)


def _split_captions(source: Path, tmp: Path, held_out: float = 0.2) -> tuple[Path, Path]:
    """Write train/test JSONL files (absolute image paths) from a captions JSONL, split by image."""
    import numpy as np

    lines = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in lines:
        row["image"] = str((source.parent / row["image"]).resolve())
    order = np.random.default_rng(0).permutation(len(lines))
    cut = round(len(lines) * held_out)
    paths = {}
    for name, index in (("test", order[:cut]), ("train", order[cut:])):
        paths[name] = tmp / f"coco-{name}.jsonl"
        paths[name].write_text("".join(json.dumps(lines[i]) + "\n" for i in sorted(index)), encoding="utf-8")
    return paths["train"], paths["test"]


def _train_pair(data: Path, out: Path, preset: str, epochs: int, lr: float, cache: Path,
                templates: tuple[str, ...]) -> tuple[Path, Path, dict]:
    """(untrained, trained, report): the untrained model is the exact initial state of the trained one."""
    from pixsearch.models.scratch import new_clip_checkpoint
    from pixsearch.quality.datasets import load_dataset
    from pixsearch.quality.examples import examples_from, split_indices, subset
    from pixsearch.quality.train import TrainOptions, train

    options = TrainOptions(data=data, output=out / "trained", from_scratch=preset, epochs=epochs, lr=lr,
                           batch_size=64, val_split=0.1, patience=0, templates=templates, cache_dir=cache)
    examples = examples_from(load_dataset(data), templates)
    train_idx, _ = split_indices(len(examples.paths), options.val_split, options.seed)
    texts = [c for caps in subset(examples, train_idx).captions for c in caps]
    from pixsearch.models.scratch import read_preset

    untrained = new_clip_checkpoint(out / "untrained", read_preset(preset), texts=texts, seed=options.seed)
    started = time.perf_counter()
    report = train(options)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return untrained, out / "trained", report


def _evaluate(data: Path, models: list[Path], cache: Path, chart: Path) -> dict:
    from pixsearch.config import Settings
    from pixsearch.quality.chart import save_chart
    from pixsearch.quality.eval import run_eval

    result = run_eval(data, [str(m) for m in models], Settings(cache_dir=str(cache)), exact=True)
    result["chart"] = str(save_chart(result, chart))
    return result


def _rows(title: str, result: dict, names: list[str]) -> list[list[str]]:
    rows = []
    captions = result["kind"] == "captions"
    metrics = [f"recall@{k}" for k in result["ks"]] + ["median_rank"] if captions else \
        [f"precision@{k}" for k in result["ks"]] + ["map"]
    for metric in metrics:
        values = [m["ann"][metric] for m in result["models"]]
        rows.append([title, metric, _f(result["chance"].get(metric)), *[_f(v) for v in values]])
    if not captions:
        values = [m["ann"]["image_to_image"]["precision@10"] for m in result["models"]]
        rows.append([title, "image→image p@10", _f(result["chance"]["image_to_image_precision"]),
                     *[_f(v) for v in values]])
    rows.append([title, "ANN vs exact r@10", "", *[_f(m["ann_recall"]["recall@10"]) for m in result["models"]]])
    return rows


def _f(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=25, help="clothing epochs")
    parser.add_argument("--coco-epochs", type=int, default=60, help="coco-mini epochs (191 images: 2 steps each)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--preset", default="bench", help="bench (default), tiny, small, or a CONFIG.json")
    parser.add_argument("--skip-coco", action="store_true")
    args = parser.parse_args(argv)
    clothing, coco = SHARED / "clothing", SHARED / "coco-mini" / "captions.jsonl"
    if not (clothing / "train").is_dir() or not coco.is_file():
        print(f"skipped: shared data not found under {SHARED} (needs clothing/train, clothing/test and "
              "coco-mini/captions.jsonl)")
        return 0
    try:
        import torch  # noqa: F401
    except ImportError:
        print("skipped: the quality benchmark trains models and needs the torch extra: pip install '.[torch]'")
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    summary: dict = {"preset": args.preset if args.preset != "bench" else BENCH_PRESET, "epochs": args.epochs,
                     "coco_epochs": args.coco_epochs, "lr": args.lr}
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="pixsearch-quality-") as tmp_name:
        tmp = Path(tmp_name)
        cache, preset = tmp / "cache", _preset(args.preset, tmp)
        templates = ("a photo of a {label}",)
        untrained, trained, report = _train_pair(clothing / "train", tmp / "clothing", preset, args.epochs,
                                                 args.lr, cache, templates)
        result = _evaluate(clothing / "test", [untrained, trained], cache, RESULTS / f"quality-{stamp}-clothing.png")
        summary["clothing"] = {"train": _slim(report), "eval": result}
        rows += _rows("clothing/test labels", result, ["untrained", "trained"])
        if not args.skip_coco:
            train_jsonl, test_jsonl = _split_captions(coco, tmp)
            untrained, trained, report = _train_pair(train_jsonl, tmp / "coco", preset, args.coco_epochs, args.lr,
                                                     cache, templates)
            held = _evaluate(test_jsonl, [untrained, trained], cache, RESULTS / f"quality-{stamp}-coco-test.png")
            fit = _evaluate(train_jsonl, [untrained, trained], cache, RESULTS / f"quality-{stamp}-coco-train.png")
            summary["coco"] = {"train": _slim(report), "eval_held_out": held, "eval_train": fit}
            rows += _rows(f"coco held-out ({held['images']} img)", held, ["untrained", "trained"])
            rows += _rows(f"coco train fit ({fit['images']} img)", fit, ["untrained", "trained"])
    _print(rows, summary)
    out = RESULTS / f"quality-{stamp}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")
    return 0


def _slim(report: dict) -> dict:
    return {k: report[k] for k in ("train_images", "val_images", "best_val_score", "history", "seconds")}


def _print(rows: list[list[str]], summary: dict) -> None:
    header = ["data", "metric", "chance", "untrained", "trained"]
    widths = [max(len(str(r[i])) for r in [*rows, header]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        cells = enumerate(zip(row, widths, strict=True))
        print("  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in cells))
    for name in ("clothing", "coco"):
        if name in summary:
            t = summary[name]["train"]
            print(f"{name}: trained on {t['train_images']} images in {t['seconds']}s; "
                  f"validation score by epoch: {[round(h['val_score'] or 0, 3) for h in t['history']]}")


if __name__ == "__main__":
    sys.exit(main())
