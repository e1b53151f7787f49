"""Search latency and recall on a real Milvus server (2.3 standalone), HNSW vs FLAT.

    python bench/server_search.py                       # starts its own server (tests/milvus_server.py)
    python bench/server_search.py --uri http://h:19530 --token root:Milvus --sizes 10000

Data: 512-d unit vectors in 200 Gaussian clusters (sigma 0.03 per dimension), queries are
perturbed cluster centres, i.e. what a text query's (cached) embedding asks of the store.
Each query is one ``Store.search`` (top-10, the row's fields returned), timed one at a time
through pixsearch's own store code and index policy. Recall@10 is against exact numpy
inner product. Two states per index: "as written" (right after the upserts, no flush:
what an index run leaves on a server) and "sealed" (flushed, index built, reloaded). In the
sealed state it also times full text queries (Searcher.by_text: embedding + search) with the
benchmark's ViT-B/32-shaped text towers, fp32 and (once ``python -m bench`` made it) int8.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pixsearch.store import FIELDS, Store, policy_for  # noqa: E402

DIM = 512
QUERIES = 200


def clustered(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(200, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    data = centres[rng.integers(0, 200, n)] + rng.normal(scale=0.03, size=(n, DIM)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    queries = centres[rng.integers(0, 200, QUERIES)] + rng.normal(scale=0.03, size=(QUERIES, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return data.astype(np.float32), queries.astype(np.float32)


def rows(data: np.ndarray) -> list[dict]:
    return [{"id": f"{i:016x}", "vector": data[i], "path": f"/photos/d{i % 97}/img {i}.jpg", "label": "",
             "size": 1000 + i, "mtime": 1.0 + i, "width": 640, "height": 480, "content_hash": f"h{i}",
             "indexed_at": 0.0} for i in range(len(data))]


def measure(store: Store, queries: np.ndarray, truth: np.ndarray, consistency: str, count: int) -> dict:
    store.policy = dataclasses.replace(store.policy, search_consistency=consistency)
    times, hits = [], 0
    store.search(queries[:1], k=10)  # warm-up
    for i in range(count):
        started = time.perf_counter()
        result = store.search(queries[i:i + 1], k=10, output_fields=FIELDS)[0]
        times.append(time.perf_counter() - started)
        hits += len({int(h.id, 16) for h in result} & set(truth[i].tolist()))
    ms = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "recall_at_10": round(hits / (10 * count), 4), "queries": count}


def text_queries(store: Store, embedders: dict, count: int = 100) -> dict:
    """Full text queries (embedding + search) per text tower, as bench/query.py times them on Lite."""
    from bench.query import time_text_queries
    from pixsearch.search import Searcher

    searchers = {name: Searcher(store, embedder) for name, embedder in embedders.items()}
    for searcher in searchers.values():
        searcher.by_text("warm-up")
    return time_text_queries(searchers, count, tag="server")


def wait_indexed(store: Store, timeout: float = 900) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        info = store.index_progress()
        pending, indexed = int(info.get("pending_index_rows", 0)), int(info.get("indexed_rows", 0))
        if pending == 0 and indexed >= int(info.get("total_rows", 1)):
            break
        time.sleep(1)
    store.reload()
    return time.monotonic() - started


def run(uri: str, token: str, sizes: list[int], embedders: dict) -> list[dict]:
    results = []
    base = policy_for(uri)
    for n in sizes:
        data, queries = clustered(n)
        truth = np.argsort(-(queries @ data.T), axis=1)[:, :10]
        for index_type, params in (("HNSW", base.index_params), ("FLAT", {})):
            store = Store(uri, token=token, collection=f"bench_{index_type.lower()}_{n}", timeout=600)
            store.policy = dataclasses.replace(base, index_type=index_type, index_params=params,
                                               search_params=base.search_params if index_type == "HNSW" else {})
            if store.exists():
                store.drop()
            store.ensure_collection("bench", "bench", DIM)
            started = time.perf_counter()
            store.upsert(rows(data))
            insert_s = time.perf_counter() - started
            row = {"n": n, "index": index_type, "insert_s": round(insert_s, 1)}
            row["as_written_session"] = measure(store, queries, truth, "Session", QUERIES)
            row["as_written_strong"] = measure(store, queries, truth, "Strong", 20)
            started = time.perf_counter()
            store.flush(force=True)
            row["flush_s"] = round(time.perf_counter() - started, 1)
            row["index_and_reload_s"] = round(wait_indexed(store), 1)
            row["sealed_session"] = measure(store, queries, truth, "Session", QUERIES)
            row["sealed_strong"] = measure(store, queries, truth, "Strong", 20)
            if embedders:  # with the product's own consistency level, as `pixsearch search` runs
                store.policy = dataclasses.replace(store.policy, search_consistency=base.search_consistency)
                row["sealed_text_query"] = text_queries(store, embedders)
            print(json.dumps(row), flush=True)
            results.append(row)
            store.drop()
            store.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uri", default="", help="an existing server; default: start one (needs .ci/milvus-venv)")
    parser.add_argument("--token", default="")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--no-text", action="store_true", help="skip the full text queries (embedding + search)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    from bench.models import text_embedders

    embedders = {} if args.no_text else text_embedders("vit-b-32")
    if args.uri:
        run(args.uri, args.token, sizes, embedders)
        return
    from tests.milvus_server import TOKEN, MilvusServer, launcher_python

    python, why_not = launcher_python()
    if not python:
        sys.exit(why_not)
    server = MilvusServer(python)
    try:
        with server:
            run(server.uri, TOKEN, sizes, embedders)
    finally:
        server.remove_data()


if __name__ == "__main__":
    main()
