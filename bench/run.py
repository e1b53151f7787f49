"""pixsearch speed benchmarks: one command, a table of figures next to same-run baselines, JSON results.

    python -m bench            # quick mode (~6 min once models are cached)
    python -m bench --full     # 1M vectors, 100k synthetic images, settings sweep (long: run in background)

Results go to bench/results/<timestamp>-<mode>.json. The first run builds the
random-weight ViT-B/32 and ViT-B/16 models and their INT8 variants (several
minutes, needs ``pip install 'pixsearch[torch]'``); later runs reuse them from
``$PIXSEARCH_BENCH_CACHE`` (default ~/.cache/pixsearch/bench).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from . import compute, indexing, query, sweep
from .common import COCO, RESULTS, ROOT, SHARED, Row, log, machine_info
from .models import checkpoint_dir, ensure_int8, ensure_onnx, model_spec, text_embedders

MODE = {
    "quick": {"b32_images": None, "b16_images": 64, "query_sizes": [10_000, 100_000], "queries": 100,
              "memory_images": 5_000},
    "full": {"b32_images": 1000, "b16_images": None, "query_sizes": [10_000, 100_000, 1_000_000], "queries": 200,
             "memory_images": 100_000},
}
LABEL = {"vit-b-32": "ViT-B/32", "vit-b-16": "ViT-B/16"}


def bench_files(limit: int | None) -> list[Path]:
    """The shared COCO photos first, then clothing photos when more are asked for."""
    files = indexing.image_files(COCO)
    if limit and limit > len(files):
        files += indexing.image_files(SHARED / "clothing")[: limit - len(files)]
    return files[:limit] if limit else files


def indexing_section(preset: str, files: list[Path], rows: list[Row], results: dict) -> None:
    """pixsearch fp32 and int8 vs the naive torch loop, for one model shape."""
    directory = ensure_onnx(preset)
    variant = ensure_int8(preset, indexing.image_files(COCO)[:64])
    name = LABEL[preset]
    log(f"indexing {len(files)} images with {name}: naive torch, pixsearch fp32, pixsearch int8")
    naive = indexing.naive_torch(checkpoint_dir(preset), files)
    fp32 = indexing.pixsearch_index(directory, "fp32", files)
    int8 = indexing.pixsearch_index(directory, "int8", files)
    naive_what = f"naive torch fp32 loop ({naive.rate:.1f} img/s)"
    rows.append(Row("indexing", f"{name} pixsearch fp32 (decode+embed+Milvus insert)", fp32.rate, "img/s",
                    naive.rate, naive_what))
    rows.append(Row("indexing", f"{name} pixsearch int8 ({variant['image_recipe']}, verified={variant['verified']})",
                    int8.rate, "img/s", naive.rate, naive_what))
    results["indexing"][preset] = {"images": len(files), "naive_torch": naive.rate, "fp32": fp32.rate,
                                   "int8": int8.rate, "int8_variant": variant}
    log(f"  naive {naive.rate:.1f}, fp32 {fp32.rate:.1f}, int8 {int8.rate:.1f} img/s")


def compute_section(rows: list[Row], results: dict) -> None:
    """Peak fp32 matmul rate, model FLOPs, and how close each measured rate came to the ceiling."""
    peak = compute.peak_matmul_gflops()
    best = max(peak.values())
    results["compute"] = {"peak_gflops": peak}
    rows.append(Row("compute", "peak fp32 matmul (2048^3, best of numpy/torch)", best, "GFLOP/s",
                    note=", ".join(f"{k} {v:.0f}" for k, v in peak.items())))
    for preset, measured in results["indexing"].items():
        gflop = compute.vit_gflops_per_image(checkpoint_dir(preset))
        ceiling = best / gflop
        results["compute"][preset] = {"gflop_per_image": gflop, "fp32_ceiling_img_s": ceiling}
        rows.append(Row("compute", f"{LABEL[preset]} fp32 ceiling ({gflop:.1f} GFLOP/image)", ceiling, "img/s"))
        for variant in ("fp32", "int8"):
            rows.append(Row("compute", f"{LABEL[preset]} pixsearch {variant} as share of fp32 ceiling",
                            measured[variant] / ceiling, "x", note="int8 can exceed 1: its ceiling is higher"))


def query_section(sizes: list[int], n_queries: int, rows: list[Row], results: dict) -> None:
    """Text-query latency at each size: Milvus Lite via Store vs NumPy exact, recall@10, and the full
    text query with the fp32 text tower next to the verified int8 one."""
    variant = ensure_int8("vit-b-32", indexing.image_files(COCO)[:64])
    embedders = text_embedders("vit-b-32")
    towers = {name: e.spec.tower_file("text", e.variant) for name, e in embedders.items()}
    log(f"text queries at {sizes} vectors (ViT-B/32-shaped text towers: {towers})")
    out = query.run_query_bench(sizes, embedders, n_queries=n_queries, log=log)
    out["text_towers"] = towers
    out["int8_variant"] = variant
    results["query"] = out
    fp32 = out["text_embedding"]["fp32"]
    for name, embed in out["text_embedding"].items():
        recipe = f" ({variant['text_recipe']}, min cosine {variant['text_min_cosine']})" if name == "int8" else ""
        rows.append(Row("query", f"text embedding alone, ViT-B/32 text tower {name}{recipe} p50", embed["p50"], "ms",
                        fp32["p50"] if name != "fp32" else None, "fp32 p50", note=f"p95 {embed['p95']:.1f} ms"))
    for size, r in out["sizes"].items():
        n = f"{int(size):,}"
        rows.append(Row("query", f"{n}: Milvus Lite search p50", r["milvus_search"]["p50"], "ms",
                        r["numpy_exact"]["p50"], "NumPy exact p50"))
        rows.append(Row("query", f"{n}: Milvus Lite search p95", r["milvus_search"]["p95"], "ms",
                        r["numpy_exact"]["p95"], "NumPy exact p95"))
        for name, text in r["text_query"].items():
            embed = out["text_embedding"][name]
            rows.append(Row("query", f"{n}: text query, {name} text tower, p50 (Searcher.by_text)", text["p50"], "ms",
                            embed["p50"] + r["numpy_exact"]["p50"], f"{name} embedding + NumPy exact p50",
                            note=f"p95 {text['p95']:.1f} ms"))
        rows.append(Row("query", f"{n}: recall@10 vs exact", r["recall_at_10"], "", 1.0, "exact"))


def memory_section(count: int, rows: list[Row], results: dict) -> None:
    """Index *count* synthetic images in a fresh process (clean RSS), then re-index the unchanged tree."""
    out_path = RESULTS / f".memory-{os.getpid()}.json"
    log(f"memory: indexing {count:,} synthetic images in a subprocess, then re-indexing them unchanged")
    subprocess.run([sys.executable, "-m", "bench.memory", str(count), str(out_path)], check=True, cwd=ROOT)
    data = json.loads(out_path.read_text())
    out_path.unlink()
    results["memory"] = data
    first = data["first_run"]
    at = first["at_progress"]
    rows.append(Row("memory", f"peak Python RSS indexing {count:,} images", first["peak_python_mb"], "MB",
                    at["25%"]["python_mb"], "RSS at 25% of the files",
                    note=f"50% {at['50%']['python_mb']:.0f}, 100% {at['100%']['python_mb']:.0f} MB; "
                         f"growth {first['python_growth_mb_per_10k']:.1f} MB per 10k images"))
    rows.append(Row("memory", "peak Milvus Lite engine RSS (holds the vectors)", first["peak_engine_mb"], "MB",
                    at["25%"]["engine_mb"], "engine RSS at 25%"))
    rows.append(Row("memory", f"first-run rate ({data['model']} model, synthetic 160x120)", first["rate"], "img/s"))
    reindex = data["reindex"]
    rows.append(Row("reindex", f"re-index {count:,} unchanged files", reindex["seconds"], "s", first["seconds"],
                    "first run", note=f"{reindex['unchanged']:,} unchanged, {reindex['embedded']} embedded; "
                                      f"peak RSS {reindex['peak_python_mb']:.0f} MB"))


def sweep_section(results: dict) -> None:
    directory = ensure_onnx("vit-b-32")
    files = bench_files(None)
    log("sweep: graph optimisation levels (bare session, batch 32)")
    int8_image = model_spec(directory).tower_file("image", "int8")
    levels = sweep.optimisation_levels(directory, ["visual.onnx", int8_image], log=log)
    log("sweep: threads x workers x batch (Indexer end to end)")
    grid = [*sweep.pipeline_grid(directory, "int8", files, log=log),
            *sweep.pipeline_grid(directory, "fp32", files, log=log)]
    results["sweep"] = {"optimisation_levels": levels, "pipeline": grid}


def format_table(rows: list[Row]) -> str:
    """A Markdown table: figure, same-run baseline, ratio."""
    lines = ["| section | measure | value | same-run baseline | ratio | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        value = f"{r.value:.3f}" if r.unit in ("", "x") else f"{r.value:,.1f} {r.unit}"
        base = "" if r.baseline is None else f"{r.baseline:,.{3 if r.unit == '' else 1}f} {r.unit} ({r.baseline_what})"
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
        lines.append(f"| {r.section} | {r.what} | {value} | {base} | {ratio} | {r.note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="1M vectors, 100k images, 1000-image indexing, sweep")
    parser.add_argument("--only", default="", help="comma-separated sections: indexing,compute,query,memory,sweep")
    parser.add_argument("--sweep", action="store_true", help="also run the settings sweep (always on in --full)")
    args = parser.parse_args(argv)
    mode = "full" if args.full else "quick"
    cfg = MODE[mode]
    wanted = set(filter(None, args.only.split(","))) or {"indexing", "compute", "query", "memory"}
    if args.sweep or (args.full and not args.only):
        wanted.add("sweep")
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results: dict = {"mode": mode, "machine": machine_info(), "indexing": {}, "started": time.ctime(started)}
    rows: list[Row] = []
    log(f"mode {mode}; machine {results['machine']['cpu']}, {results['machine']['cores']} cores, "
        f"load {results['machine']['load_avg_at_start']:.1f}")
    if "indexing" in wanted or "compute" in wanted:
        indexing_section("vit-b-32", bench_files(cfg["b32_images"]), rows, results)
        indexing_section("vit-b-16", bench_files(cfg["b16_images"]), rows, results)
    if "compute" in wanted:
        compute_section(rows, results)
    if "query" in wanted:
        query_section(cfg["query_sizes"], cfg["queries"], rows, results)
    if "memory" in wanted:
        memory_section(cfg["memory_images"], rows, results)
    if "sweep" in wanted:
        sweep_section(results)
    results["rows"] = [r.as_dict() for r in rows]
    results["seconds"] = time.time() - started
    results["load_avg_at_end"] = os.getloadavg()[0]
    out = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{mode}.json"
    out.write_text(json.dumps(results, indent=1))
    m = results["machine"]
    print(f"\npixsearch bench ({mode}), {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, flags "
          f"{' '.join(m['cpu_flags'])}, onnxruntime {m['versions']['onnxruntime']}, load avg "
          f"{m['load_avg_at_start']:.1f} -> {results['load_avg_at_end']:.1f}, {results['seconds'] / 60:.1f} min\n")
    print(format_table(rows))
    print(f"\nJSON: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
