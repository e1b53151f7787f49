"""Bounded load test of `pixsearch serve`: N concurrent clients on loopback for a fixed time.

    python -m bench.load --scratch vit-b-32 --images 10000 --clients 8 --seconds 20

builds (once, cached) an index of the 20 sample photos plus synthetic rows up to
``--images``, starts a real ``pixsearch serve`` on a free loopback port, and has
each client send text queries (``GET /api/search``) back to back on a keep-alive
connection until the time is up. Every answer is checked against the answer the
idle server gave to the same query, so a server that stays fast but goes wrong
fails the run. Reports requests/s and p50/p95/p99 latency; ``--url`` measures a
server that is already running instead.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing
import os
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ["a red dress", "a blue hat", "black leather shoes", "white t-shirt", "jeans", "a long sleeve shirt",
           "a short skirt", "a winter coat", "shorts for summer", "a photo of clothing"]


@dataclass
class ClientTally:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def get(connection: http.client.HTTPConnection, path: str, token: str) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


def search_path(query: str, k: int) -> str:
    return "/api/search?" + urllib.parse.urlencode({"q": query, "k": k})


def answer_ids(status: int, body: bytes) -> list[str] | None:
    """The result ids of a good answer (scores descending), else None."""
    if status != 200:
        return None
    results = json.loads(body)["results"]
    scores = [r["score"] for r in results]
    return [r["id"] for r in results] if scores == sorted(scores, reverse=True) else None


def client(url: str, token: str, paths: list[str], expected: dict[str, list[str]], offset: int,
           deadline: float, tally: ClientTally, fresh: bool = False, k: int = 10) -> None:
    """One client: query after query on one keep-alive connection until *deadline*.

    *fresh*: every query is new text (not in the server's embedding cache), so the
    text tower runs each time; the answer is then checked for shape, not for exact ids.
    """
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    i = offset
    while time.perf_counter() < deadline:
        path = paths[i % len(paths)]
        if fresh:
            path = search_path(f"{QUERIES[i % len(QUERIES)]} number {offset}-{i}", k)
        i += 1
        started = time.perf_counter()
        try:
            status, body = get(connection, path, token)
        except (OSError, http.client.HTTPException) as exc:
            tally.errors.append(f"{path}: {exc}")
            connection.close()
            continue
        tally.latencies.append(time.perf_counter() - started)
        ids = answer_ids(status, body)
        if (len(ids or ()) != k) if fresh else (ids != expected[path]):
            tally.errors.append(f"{path}: status {status}, answer differs from the idle server's")
    connection.close()


def run_load(url: str, token: str, clients: int, seconds: float, k: int, fresh: bool = False) -> dict:
    """Drive *clients* concurrent clients for *seconds*; return the figures."""
    parts = urllib.parse.urlsplit(url)
    probe = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    paths = [search_path(q, k) for q in QUERIES]
    expected = {}
    for path in paths:  # also warms the text-embedding cache, as repeated queries are in real use
        ids = answer_ids(*get(probe, path, token))
        if ids is None:
            raise SystemExit(f"{url}{path} did not answer correctly before the load started")
        expected[path] = ids
    status, body = get(probe, "/api/stats", token)
    count = json.loads(body)["count"] if status == 200 else None
    probe.close()
    tallies = [ClientTally() for _ in range(clients)]
    deadline = time.perf_counter() + seconds
    threads = [threading.Thread(target=client, args=(url, token, paths, expected, n, deadline, tallies[n], fresh, k))
               for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies = np.array([x for t in tallies for x in t.latencies]) * 1000
    errors = [e for t in tallies for e in t.errors]
    return {"url": url, "index_images": count, "clients": clients, "seconds": round(elapsed, 2), "k": k,
            "queries": "fresh (embedded each time)" if fresh else "repeated (embedding cached)",
            "requests": int(latencies.size), "requests_per_second": round(latencies.size / elapsed, 1),
            "p50_ms": round(float(np.percentile(latencies, 50)), 2) if latencies.size else None,
            "p95_ms": round(float(np.percentile(latencies, 95)), 2) if latencies.size else None,
            "p99_ms": round(float(np.percentile(latencies, 99)), 2) if latencies.size else None,
            "errors": len(errors), "first_errors": errors[:5]}


# ----------------------------------------------------------------------------- the index and the server


def bench_model(args: argparse.Namespace) -> str:
    if args.model:
        return args.model
    from .models import ensure_onnx

    return str(ensure_onnx(args.scratch))


def build_index(db: Path, model: str, images: int, cache_dir: str) -> None:
    """The sample photos, really embedded, plus synthetic rows (random unit vectors) up to *images*.

    Synthetic rows make the vector search as large as a real collection without decoding
    thousands of files; their paths do not exist, so only search is meaningful for them.
    """
    from pixsearch.config import Settings
    from pixsearch.indexer import Indexer, image_id
    from pixsearch.workspace import open_workspace

    ws = open_workspace(Settings(db=str(db), model=model, cache_dir=cache_dir), create=True)
    try:
        report = Indexer(ws.store, ws.embedder).run([ROOT / "samples" / "clothing.csv"])
        rng = np.random.default_rng(0)
        now = time.time()
        for start in range(report.added, images, 5000):
            count = min(5000, images - start)
            vectors = rng.standard_normal((count, ws.embedder.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            paths = [f"/synthetic/{n // 1000:04d}/{n:07d}.jpg" for n in range(start, start + count)]
            ws.store.upsert([{"id": image_id(p), "vector": v, "path": p, "label": "synthetic", "size": 0,
                              "mtime": now, "width": 0, "height": 0, "content_hash": f"{n:032x}",
                              "indexed_at": now} for n, (p, v) in enumerate(zip(paths, vectors, strict=True), start)])
        ws.store.flush()
    finally:
        ws.close()


def start_server(db: Path, model: str, cache_dir: str, threads: int, log: Path):
    """`pixsearch serve` on a free loopback port; returns (process, url) once /health answers."""
    import socket
    import subprocess
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "pixsearch", "serve", "--db", str(db), "--model", model, "--port", str(port),
               "--threads", str(threads)]
    env = {**os.environ, "PIXSEARCH_CACHE_DIR": cache_dir, "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit(f"pixsearch serve did not start; see {log}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="Measure this running server instead of starting one.")
    parser.add_argument("--token", default=os.environ.get("PIXSEARCH_API_TOKEN", ""), help="Its --api-token.")
    parser.add_argument("--model", help="Model for the index (default: the --scratch preset).")
    parser.add_argument("--scratch", default="vit-b-32", help="Random-weight preset (bench/models.py).")
    parser.add_argument("--images", type=int, default=10_000, help="Index size (samples + synthetic rows).")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--fresh", action="store_true", help="Make every query new text (no embedding cache).")
    parser.add_argument("--threads", type=int, default=0, help="Server's ONNX Runtime threads (0: auto).")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args(argv)
    process = None
    if args.url:
        url = args.url.rstrip("/")
    else:
        work = Path(os.environ.get("PIXSEARCH_BENCH_CACHE", Path.home() / ".cache" / "pixsearch" / "bench")) / "load"
        work.mkdir(parents=True, exist_ok=True)
        model = bench_model(args)
        tag = hashlib.blake2b(os.path.abspath(model).encode(), digest_size=4).hexdigest()
        db = work / f"load-{tag}-{args.images}.db"  # Milvus Lite wants file names under 36 characters
        cache_dir = str(work / "cache")
        if not db.exists():  # in a child process: Milvus Lite keeps a file locked by the process that opened it
            builder = multiprocessing.get_context("spawn").Process(target=build_index,
                                                                   args=(db, model, args.images, cache_dir))
            builder.start()
            builder.join()
            if builder.exitcode != 0:
                raise SystemExit(f"building the index {db} failed")
        process, url = start_server(db, model, cache_dir, args.threads, work / "serve.log")
    try:
        figures = run_load(url, args.token, args.clients, args.seconds, args.k, args.fresh)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{figures['index_images']} images, {figures['queries']} queries, {figures['clients']} clients, "
              f"{figures['seconds']}s: "
              f"{figures['requests']} requests, {figures['requests_per_second']} req/s, "
              f"p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms, p99 {figures['p99_ms']} ms, "
              f"{figures['errors']} wrong or failed")
        for error in figures["first_errors"]:
            print("  " + error)
    return 1 if figures["errors"] or not figures["requests"] else 0


if __name__ == "__main__":
    sys.exit(main())
