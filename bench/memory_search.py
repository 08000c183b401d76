"""Exact top-k search over 100K × 384 float32 unit vectors: our kernels beside faiss `IndexFlatIP`, one run.

Prints one JSON line per (implementation, mode). Goal (issue 4): per-query
time ≤ 1.5× faiss, for a single query and for a batch of 100. Both sides get
the same vectors and queries and the machine's default threads; the kernel
lines time `VectorKernel.search` alone, the `vector-memory` lines time
`VectorMemory.search_memory` / `search_many`, which add query checking and
packing and building the hits (what a caller pays). A `pure-python` line gives
the fallback kernel on a smaller set (what Pyodide without numpy or a JS
kernel would run). The BLAS in use is reported: OPENBLAS_CORETYPE, when this
machine sets it, can slow numpy's OpenBLAS; unset it in the command alone to
compare (see the `blas` line). For a one-core comparison set
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 on the command: with two threads a
single faiss query pays OpenMP start-up that one core does not.

Bounded: fixed query counts, `--repeats` timed rounds per mode. On a shared
machine compare the `min` figures too: they are what the loaded runs hide.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from ruvector_edge.memory import PurePythonKernel, VectorMemory
from ruvector_edge.memory.numpy_kernel import NumpyKernel


def _emit(line: dict) -> None:
    print(json.dumps(line), flush=True)


def _blas_line() -> dict:
    line: dict = {
        "bench": "memory_search", "what": "blas", "cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
    }
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        line["threadpools"] = "threadpoolctl not installed"
    else:
        line["threadpools"] = [
            {k: pool.get(k) for k in ("internal_api", "architecture", "num_threads", "version", "filepath")}
            for pool in threadpool_info()
        ]
    return line


def _unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((n, dim), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def _time_single(search, queries: np.ndarray, repeats: int) -> list[float]:
    """Seconds per query, one query at a time, `repeats` passes over the queries."""
    samples = []
    for _ in range(repeats):
        for q in queries:
            start = time.perf_counter()
            search(q)
            samples.append(time.perf_counter() - start)
    return samples


def _time_batch(search, queries: np.ndarray, repeats: int) -> list[float]:
    """Seconds per query, the whole batch in one call, `repeats` times."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        search(queries)
        samples.append((time.perf_counter() - start) / len(queries))
    return samples


def _line(impl: str, mode: str, samples: list[float], **extra) -> dict:
    ms = sorted(s * 1000 for s in samples)
    return {
        "bench": "memory_search", "impl": impl, "mode": mode, **extra,
        "per_query_ms_p50": round(statistics.median(ms), 4), "per_query_ms_mean": round(statistics.fmean(ms), 4),
        "per_query_ms_min": round(ms[0], 4), "samples": len(ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--single-queries", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--python-n", type=int, default=10_000, help="set size for the pure-Python kernel (0: skip)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the VectorMemory lines (filling it takes ~10 s)")
    args = parser.parse_args()
    n, dim, k = args.n, args.dim, args.k
    shape = {"n": n, "dim": dim, "k": k}

    _emit(_blas_line())
    rng = np.random.default_rng(2024)
    data = _unit_rows(rng, n, dim)
    queries = _unit_rows(rng, max(args.batch, args.single_queries), dim)
    single_q, batch_q = queries[: args.single_queries], queries[: args.batch]
    blobs = [row.astype("<f4").tobytes() for row in data]

    kernel = NumpyKernel(dim, initial_rows=n)
    kernel.add_many(blobs)
    kernel_single = lambda q: kernel.search([q.astype("<f4").tobytes()], k)  # noqa: E731
    kernel_batch = lambda qs: kernel.search([q.astype("<f4").tobytes() for q in qs], k)  # noqa: E731

    try:
        import faiss
    except ImportError as exc:
        faiss = None
        _emit({"bench": "memory_search", "impl": "faiss-IndexFlatIP", "unavailable": str(exc)})
    if faiss is not None:
        index = faiss.IndexFlatIP(dim)
        index.add(data)
        faiss_single = lambda q: index.search(q[None, :], k)  # noqa: E731
        faiss_batch = lambda qs: index.search(qs, k)  # noqa: E731
        _, faiss_ids = index.search(batch_q, k)
        ours = kernel_batch(batch_q)
        agree = sum(len({r for r, _ in found} & set(ids.tolist())) for found, ids in zip(ours, faiss_ids))
        _emit({"bench": "memory_search", "what": "agreement", **shape, "faiss_version": faiss.__version__,
               "same_top_k_fraction": round(agree / (k * len(batch_q)), 6)})

    # Warm both, then alternate whole blocks: libgomp (faiss) and OpenBLAS threads spin for a while
    # after a call, so switching sides query by query would time one side against the other's spinners.
    results: dict[tuple[str, str], list[float]] = {}
    contenders = [("ruvector-numpy-kernel", kernel_single, kernel_batch)]
    if faiss is not None:
        contenders.append(("faiss-IndexFlatIP", faiss_single, faiss_batch))
    for _, single, batch in contenders:
        single(single_q[0])
        batch(batch_q)
    for _ in range(args.repeats):
        for name, single, batch in contenders:
            time.sleep(0.3)
            results.setdefault((name, "single"), []).extend(_time_single(single, single_q, 1))
            time.sleep(0.3)
            results.setdefault((name, f"batch{args.batch}"), []).extend(_time_batch(batch, batch_q, 1))
    for (name, mode), samples in results.items():
        _emit(_line(name, mode, samples, **shape))
    if faiss is not None:
        for mode in ("single", f"batch{args.batch}"):
            ours, theirs = results[("ruvector-numpy-kernel", mode)], results[("faiss-IndexFlatIP", mode)]
            ratio = statistics.median(ours) / statistics.median(theirs)
            _emit({"bench": "memory_search", "what": "ratio", "mode": mode, **shape,
                   "ours_over_faiss_p50": round(ratio, 3), "ours_over_faiss_min": round(min(ours) / min(theirs), 3),
                   "goal": "<= 1.5", "goal_met": ratio <= 1.5, "loadavg_1m": round(os.getloadavg()[0], 2)})

    if not args.skip_memory:
        memory = VectorMemory("bench", dim, n, kernel=NumpyKernel(dim, initial_rows=n))
        start = time.perf_counter()
        for i, row in enumerate(data):
            memory.store_memory(f"memory {i}", row)
        fill_s = time.perf_counter() - start
        _emit({"bench": "memory_search", "what": "store_memory", **shape, "seconds": round(fill_s, 2),
               "stores_per_s": round(n / fill_s)})
        memory.search_memory(single_q[0], k)
        single = _time_single(lambda q: memory.search_memory(q, k), single_q, args.repeats)
        batch = _time_batch(lambda qs: memory.search_many(list(qs), k), batch_q, args.repeats)
        _emit(_line("vector-memory(numpy)", "single", single, **shape))
        _emit(_line("vector-memory(numpy)", f"batch{args.batch}", batch, **shape))

    if args.python_n:
        small = data[: args.python_n]
        py_kernel = PurePythonKernel(dim)
        py_kernel.add_many(blobs[: args.python_n])
        samples = _time_single(lambda q: py_kernel.search([q.astype("<f4").tobytes()], k), single_q[:5], 1)
        np_small = NumpyKernel(dim, initial_rows=len(small))
        np_small.add_many(blobs[: args.python_n])
        np_samples = _time_single(lambda q: np_small.search([q.astype("<f4").tobytes()], k), single_q, args.repeats)
        _emit(_line("ruvector-pure-python-kernel", "single", samples, n=args.python_n, dim=dim, k=k))
        _emit(_line("ruvector-numpy-kernel", "single", np_samples, n=args.python_n, dim=dim, k=k))


if __name__ == "__main__":
    main()
