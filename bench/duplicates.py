"""Duplicate finder benchmark: precision and recall on altered copies of the shared photos.

Builds a labelled set in a temporary folder (``pixsearch.quality.dupset``): N originals from
coco-mini (and clothing, whose same-label photos are look-alike negatives), each with ten
copies that are the same picture (exact, JPEG q50/q90, 50% resize, 5%/10% crops, rotations by
90/180, mirror, metadata stripped) and two near misses that are not (a 30% corner crop, a
shifted re-exposed "burst" frame). Indexes it with the given model (default: the tiny random
CLIP of tests/tiny_model.py, so the hash has to carry the decision), then runs the finder over
a sweep of Hamming thresholds, next to the baseline of deciding by CLIP cosine alone.

    python -m bench.duplicates [--originals 60] [--clothing 40] [--model DIR] [--db URI --token T]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from .common import RESULTS, SHARED, log, machine_info

ROOT = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """The shared photos: $PIXSEARCH_SHARED_DATA, else ../shared/data beside the checkout (or a worktree's)."""
    candidates = [Path(os.environ.get("PIXSEARCH_SHARED_DATA", "")), SHARED, ROOT.parents[1] / "shared" / "data"]
    for folder in candidates:
        if str(folder) not in ("", ".") and (folder / "coco-mini").is_dir():
            return folder
    raise SystemExit("no shared photos found: set PIXSEARCH_SHARED_DATA to the folder holding coco-mini/ and clothing/")


def _clothing(count: int) -> list[Path]:
    """*count* clothing photos, a few per label, so that each label brings look-alikes."""
    data = shared_data()
    rows = (data / "clothing" / "labels.csv").read_text(encoding="utf-8").splitlines()[1:]
    by_label: dict[str, list[Path]] = {}
    for line in rows:
        path, label, _split = line.rsplit(",", 2)
        by_label.setdefault(label, []).append(data / "clothing" / path)
    picked: list[Path] = []
    while len(picked) < count and any(by_label.values()):
        for files in by_label.values():
            if files and len(picked) < count:
                picked.append(files.pop(0))
    return picked


def _tiny_model(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.tiny_model import build_tiny_model

    return build_tiny_model(folder / "tiny-clip", texts=["a photo"] * 5)


def run(originals: int, clothing: int, model: str, db: str, token: str, sweep: list[int]) -> dict[str, object]:
    from pixsearch.config import Settings
    from pixsearch.duplicates import Limits, Rules, find
    from pixsearch.quality import dupset
    from pixsearch.workspace import new_indexer, open_workspace

    with tempfile.TemporaryDirectory(prefix="pixsearch-dups-") as tmp_name:
        tmp = Path(tmp_name)
        cloth = _clothing(clothing)
        photos = sorted((shared_data() / "coco-mini" / "images").glob("*.jpg"))[:originals]
        truth = dupset.build(photos + cloth[: len(cloth) // 2], tmp / "set", plain=cloth[len(cloth) // 2:])
        model = model or str(_tiny_model(tmp))
        settings = Settings(db=db or str(tmp / "dups.db"), token=token, model=model)
        started = time.perf_counter()
        ws = open_workspace(settings, create=True)
        try:
            report = new_indexer(ws, settings).run([truth.root])
            index_s = time.perf_counter() - started
            log(f"indexed {report.added} files in {index_s:.1f}s")
            rows = []
            for bits in sweep:
                for cosine in (0.0, 0.8, 0.9):
                    started = time.perf_counter()
                    found = find(ws.store, Rules(max_hamming=bits, min_cosine=cosine), Limits())
                    seconds = time.perf_counter() - started
                    scores = dupset.score([[m.path for m in g.members] for g in found.groups], truth)
                    rows.append({"decision": f"hash <= {bits} bits and cosine >= {cosine}", "bits": bits,
                                 "cosine": cosine, "seconds": round(seconds, 3), **vars(scores)})
            for cosine in (0.9, 0.95, 0.98, 0.99):
                found = find(ws.store, Rules(max_hamming=0, min_cosine=1.0, similar=True, similar_cosine=cosine),
                             Limits(neighbours=64))
                groups = [[m.path for m in g.members] for g in found.groups]
                scores = dupset.score(groups, truth)
                rows.append({"decision": f"CLIP cosine >= {cosine} alone (baseline)", "bits": None, "cosine": cosine,
                             **vars(scores)})
        finally:
            ws.close()
    return {"machine": machine_info(), "model": model, "images": len(truth.group_of), "originals": len(photos),
            "true_pairs": len(truth.true_pairs()), "index_seconds": round(index_s, 1), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--originals", type=int, default=60, help="coco-mini photos to alter")
    parser.add_argument("--clothing", type=int, default=40, help="clothing photos (half altered, half plain)")
    parser.add_argument("--model", default="", help="model to index with (default: the tiny random CLIP)")
    parser.add_argument("--db", default="", help="Milvus URI (default: a Milvus Lite file in the temp folder)")
    parser.add_argument("--token", default="")
    parser.add_argument("--sweep", default="4,8,10,12,14,16,20", help="Hamming thresholds to try")
    args = parser.parse_args(argv)
    result = run(args.originals, args.clothing, args.model, args.db, args.token,
                 [int(b) for b in args.sweep.split(",")])
    print(f"{result['images']} images, {result['true_pairs']} duplicate pairs, model {result['model']}")
    print(f"{'decision':48s} {'precision':>9s} {'recall':>7s} {'found':>6s}  wrong pairs by variant")
    for row in result["rows"]:  # type: ignore[attr-defined]
        print(f"{row['decision']:48s} {row['precision']:9.3f} {row['recall']:7.3f} {row['found']:6d}  "
              f"{row['false_by_variant']}")
    best = [r for r in result["rows"] if r["bits"] is not None]  # type: ignore[attr-defined]
    for row in best:
        if row["bits"] == 12 and row["cosine"] == 0.8:
            print("recall by variant at the defaults:", json.dumps(row["recall_by_variant"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}-duplicates.json"
    out.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
