"""Text-query latency on the default embedded store (Milvus Lite via pixsearch's Store) vs NumPy exact search.

Vectors imitate CLIP embeddings instead of being uniform on the sphere (where
every approximate index looks bad and no real library lives): a shared offset
direction (CLIP image embeddings are ~0.4-0.5 cosine apart on average), many
clusters of similar pictures, and queries from a different offset (the
text/image "modality gap"), about 0.3 cosine from their matches. One collection
grows through the sizes, so each size costs only the rows it adds.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixsearch.search import Searcher
from pixsearch.store import Store

DIM = 512


@dataclass(frozen=True)
class ClipLikeSpace:
    """A fixed random geometry (offset directions and cluster centres) to draw vectors from."""

    image_offset: np.ndarray
    text_offset: np.ndarray
    centres: np.ndarray

    @classmethod
    def make(cls, clusters: int = 4000, dim: int = DIM, seed: int = 0) -> ClipLikeSpace:
        rng = np.random.default_rng(seed)
        basis = _unit(rng.standard_normal((clusters + 2, dim), dtype=np.float32))
        return cls(image_offset=basis[0], text_offset=basis[1], centres=basis[2:])

    def draw(self, count: int, rng: np.random.Generator, text: bool = False) -> np.ndarray:
        """*count* unit vectors: offset + a random cluster centre + isotropic noise."""
        offset = self.text_offset if text else self.image_offset
        centres = self.centres[rng.integers(len(self.centres), size=count)]
        noise = rng.standard_normal((count, self.centres.shape[1]), dtype=np.float32) / np.sqrt(self.centres.shape[1])
        return _unit(0.7 * offset + 0.6 * centres + 0.5 * noise)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def geometry_stats(vectors: np.ndarray, queries: np.ndarray) -> dict[str, float]:
    """Mean pairwise cosine, mean top-1 neighbour cosine and mean best query score: proof of CLIP-like shape."""
    sample = vectors[:2000]
    sims = sample @ sample.T
    np.fill_diagonal(sims, -1)
    return {"mean_pairwise_cos": float(sims[sims > -1].mean()), "mean_nn_cos": float(sims.max(1).mean()),
            "mean_best_query_score": float((queries[:50] @ vectors.T).max(1).mean())}


def _rows(vectors: np.ndarray, start: int) -> list[dict]:
    return [{"id": f"{start + i:016x}", "vector": v, "path": f"/bench/img{start + i:07d}.jpg", "label": "",
             "size": 1000, "mtime": 0.0, "width": 640, "height": 480, "content_hash": f"{start + i:032x}",
             "indexed_at": 0.0} for i, v in enumerate(vectors)]


def wait_for_index(store: Store, timeout: float = 300.0) -> float:
    """Flush, then wait until the vector index covers every row it reports (unindexed rows are brute-forced).

    Milvus Lite 2.5 reports total_rows 0 and state Finished; a server reports real progress.
    """
    start = time.perf_counter()
    store.flush()
    while time.perf_counter() - start < timeout:
        info = store.index_progress()
        if (info.get("indexed_rows", 0) >= info.get("total_rows", 0) and not info.get("pending_index_rows", 0)
                and info.get("state", "Finished") == "Finished"):
            break
        time.sleep(0.5)
    return time.perf_counter() - start


def exact_top_k(vectors: np.ndarray, query: np.ndarray, k: int = 10) -> np.ndarray:
    """NumPy exact search, the physical reference: one matrix-vector product and a partial sort."""
    scores = vectors @ query
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def measure_size(store: Store, vectors: np.ndarray, queries: np.ndarray, searchers: dict[str, Searcher],
                 n_queries: int) -> dict:
    """Latency (Store.search, and the full text query with each text tower) and recall@10 of Milvus
    against NumPy at the current size."""
    milvus_s, exact_s, recalls = [], [], []
    for i in range(3):  # warm-up: caches, segment loading
        store.search(queries[i:i + 1], k=10)
    for i in range(n_queries):
        q = queries[i]
        start = time.perf_counter()
        hits = store.search(q[None, :], k=10)[0]
        milvus_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        exact = exact_top_k(vectors, q)
        exact_s.append(time.perf_counter() - start)
        found = {int(h.id, 16) for h in hits}
        recalls.append(len(found & set(exact.tolist())) / 10)
    from .common import percentiles

    return {"milvus_search": percentiles(milvus_s), "numpy_exact": percentiles(exact_s),
            "text_query": time_text_queries(searchers, n_queries, tag=str(len(vectors))),
            "recall_at_10": float(np.mean(recalls))}


def time_text_queries(searchers: dict[str, Searcher], count: int, tag: str = "", block: int = 20) -> dict:
    """Percentiles (ms) of full text queries (Searcher.by_text) per searcher, a new text each time.

    The searchers (one per text tower) alternate in blocks: all see the same machine load, yet each
    runs with warm caches, as the only tower of a real server does (alternating every query made
    each tower evict the other's weights: +3-4 ms).
    """
    from .common import percentiles

    times: dict[str, list[float]] = {name: [] for name in searchers}
    for first in range(0, count, block):
        for name, searcher in searchers.items():
            for i in range(first, min(first + block, count)):  # new text each time: no embedding-cache hits
                start = time.perf_counter()
                searcher.by_text(f"photo number {i} of a dog on a beach {tag}")
                times[name].append(time.perf_counter() - start)
    return {name: percentiles(values) for name, values in times.items()}


def run_query_bench(sizes: list[int], embedders: dict, n_queries: int = 200, db_dir: Path | None = None,
                    log=print) -> dict:
    """Grow one Milvus Lite collection through *sizes*; measure each size with each text tower in
    *embedders* (name -> Embedder). Returns a JSON-able dict."""
    from .common import percentiles, time_calls, tree_rss_mb

    space = ClipLikeSpace.make()
    rng = np.random.default_rng(1)
    queries = space.draw(max(n_queries, 50), np.random.default_rng(2), text=True)
    embed = {name: percentiles(time_calls(lambda i, e=e: e.embed_texts([f"a photo of a red car number {i}"]),
                                          n_queries))
             for name, e in embedders.items()}
    out: dict = {"text_embedding": embed, "sizes": {}}
    with tempfile.TemporaryDirectory(dir=db_dir, prefix="bench-query-") as tmp:
        store = Store(str(Path(tmp) / "query.db"), collection="bench_query")
        try:
            store.ensure_collection("bench-vectors", "bench", DIM)
            searchers = {name: Searcher(store, e) for name, e in embedders.items()}
            parts: list[np.ndarray] = []
            have = 0
            for size in sorted(sizes):
                start = time.perf_counter()
                while have < size:
                    chunk = space.draw(min(10_000, size - have), rng)
                    store.upsert(_rows(chunk, have))
                    parts.append(chunk)
                    have += len(chunk)
                insert_s = time.perf_counter() - start
                index_s = wait_for_index(store)
                vectors = np.concatenate(parts) if len(parts) > 1 else parts[0]
                parts = [vectors]
                result = measure_size(store, vectors, queries, searchers, n_queries)
                result.update(insert_seconds=insert_s, index_wait_seconds=index_s, rss_mb=tree_rss_mb(),
                              geometry=geometry_stats(vectors, queries))
                out["sizes"][str(size)] = result
                text = ", ".join(f"{name} {t['p50']:.1f}" for name, t in result["text_query"].items())
                log(f"  {size:>9,} vectors: Milvus p50 {result['milvus_search']['p50']:.1f} ms, NumPy "
                    f"{result['numpy_exact']['p50']:.1f} ms, recall@10 {result['recall_at_10']:.3f}, "
                    f"text query p50 {text} ms (insert {insert_s:.0f}s)")
        finally:
            store.close()
    out["policy"] = {"index_type": store.policy.index_type, "index_params": store.policy.index_params,
                     "search_params": store.policy.search_params, "consistency": store.policy.consistency}
    return out
