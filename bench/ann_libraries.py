"""Which HNSW library backs the native index: faiss IndexHNSWFlat, hnswlib and usearch on the issue-13 corpus, one run.

Prints one JSON line per (library, setting). Each library is built on the same
100K × 384 corpus (`ann_corpus.intrinsic_corpus`, top-1 cosine ~0.7) and then
measured one thread at a time: single-query p50 and recall@10 against exact
search at several search breadths (ef), inserts per second in sync-sized
batches (256), recall after deleting 10% (a library without deletes reports
it), and save/load time and size. The choice in `memory/hnsw_index.py` cites
these figures.

Bounded: fixed corpus, fixed query count, fixed settings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np

from ann_corpus import intrinsic_corpus


def _emit(line: dict) -> None:
    print(json.dumps(line), flush=True)


def exact_top(data: np.ndarray, queries: np.ndarray, k: int, alive: np.ndarray | None = None) -> np.ndarray:
    scores = queries @ data.T
    if alive is not None:
        scores[:, ~alive] = -np.inf
    return np.argsort(-scores, axis=1)[:, :k]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def p50_ms(search, queries: np.ndarray) -> tuple[float, np.ndarray]:
    times, found = [], []
    for q in queries:
        start = time.perf_counter()
        found.append(search(q))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, np.array(found)


class Faiss:

    def __init__(self, dim: int, m: int, ef_construction: int) -> None:
        import faiss

        self.faiss = faiss
        self.name = f"faiss-IndexHNSWFlat-M{m}-efc{ef_construction}"
        self.index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = ef_construction

    def add(self, rows, labels):  # faiss HNSW labels are positions: labels must be 0.. in order
        self.index.add(rows)

    def set_ef(self, ef):
        self.index.hnsw.efSearch = ef

    def search(self, q, k):
        return self.index.search(q[None, :], k)[1][0]

    def delete(self, labels):
        raise NotImplementedError("IndexHNSW has no remove_ids: deletes need an IDSelector filter and rebuilds")

    def save(self, path):
        self.faiss.write_index(self.index, path)

    def load(self, path):
        self.index = self.faiss.read_index(path)


class Hnswlib:

    def __init__(self, dim: int, m: int, ef_construction: int) -> None:
        import hnswlib

        self.hnswlib, self.dim = hnswlib, dim
        self.name = f"hnswlib-M{m}-efc{ef_construction}"
        self.index = hnswlib.Index(space="ip", dim=dim)
        self.index.init_index(max_elements=200_000, M=m, ef_construction=ef_construction, allow_replace_deleted=True)

    def add(self, rows, labels):
        self.index.add_items(rows, labels, replace_deleted=True)

    def set_ef(self, ef):
        self.index.set_ef(ef)

    def search(self, q, k):
        return self.index.knn_query(q, k)[0][0]

    def delete(self, labels):
        for label in labels:
            self.index.mark_deleted(int(label))

    def save(self, path):
        self.index.save_index(path)

    def load(self, path):
        self.index = self.hnswlib.Index(space="ip", dim=self.dim)
        self.index.load_index(path, allow_replace_deleted=True)


class Usearch:
    def __init__(self, dim: int, m: int, ef_construction: int, dtype: str) -> None:
        from usearch.index import Index

        self.Index, self.dim, self.dtype, self.m = Index, dim, dtype, m
        self.name = f"usearch-{dtype}"
        self.index = Index(ndim=dim, metric="ip", dtype=dtype, connectivity=m, expansion_add=ef_construction)

    def add(self, rows, labels):
        self.index.add(labels, rows, threads=self.threads)

    threads = 1

    def set_ef(self, ef):
        self.index.expansion_search = ef

    def search(self, q, k):
        return self.index.search(q, k, threads=1).keys

    def delete(self, labels):
        self.index.remove(labels)

    def save(self, path):
        self.index.save(path)

    def load(self, path):
        self.index = self.Index.restore(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=40)
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--libs", default="faiss,hnswlib,usearch-f32,usearch-i8")
    args = parser.parse_args()
    k, dim, n = 10, 384, args.n
    rows = intrinsic_corpus(n + args.queries + 5000)
    data, queries, extra = rows[:n], rows[n : n + args.queries], rows[n + args.queries :]
    labels = np.arange(n, dtype=np.int64)
    truth = exact_top(data, queries, k)
    import faiss

    flat = faiss.IndexFlatIP(dim)
    flat.add(data)
    faiss.omp_set_num_threads(1)
    flat_ms, _ = p50_ms(lambda q: flat.search(q[None, :], k)[1][0], queries[:50])
    _emit({"bench": "ann_libraries", "impl": "faiss-IndexFlatIP", "n": n, "p50_ms": round(flat_ms, 3),
           "loadavg_1m": round(os.getloadavg()[0], 2)})
    makers = {"faiss": lambda: Faiss(dim, args.m, args.ef_construction),
              "hnswlib": lambda: Hnswlib(dim, args.m, args.ef_construction),
              "usearch-f32": lambda: Usearch(dim, args.m, args.ef_construction, "f32"),
              "usearch-i8": lambda: Usearch(dim, args.m, args.ef_construction, "i8"),
              "usearch-f16": lambda: Usearch(dim, args.m, args.ef_construction, "f16")}
    for lib in args.libs.split(","):
        index = makers[lib]()
        faiss.omp_set_num_threads(args.build_threads)
        if isinstance(index, Hnswlib):
            index.index.set_num_threads(args.build_threads)
        if isinstance(index, Usearch):
            index.threads = args.build_threads
        start = time.perf_counter()
        index.add(data, labels)
        build_s = time.perf_counter() - start
        faiss.omp_set_num_threads(1)
        if isinstance(index, Hnswlib):
            index.index.set_num_threads(1)
        if isinstance(index, Usearch):
            index.threads = 1
        _emit({"bench": "ann_libraries", "impl": index.name, "what": "build", "n": n, "M": args.m,
               "threads": args.build_threads, "seconds": round(build_s, 2)})
        for ef in (16, 32, 64, 128):
            index.set_ef(ef)
            ms, found = p50_ms(lambda q: index.search(q, k), queries)
            _emit({"bench": "ann_libraries", "impl": index.name, "what": "search", "ef": ef, "p50_ms": round(ms, 3),
                   "recall_at_10": round(recall(found, truth), 4), "over_flat": round(ms / flat_ms, 3)})
        index.set_ef(64)
        start = time.perf_counter()
        batches = 0
        for at in range(0, len(extra), 256):  # sync-sized batches, one query between batches
            index.add(extra[at : at + 256], np.arange(n + at, n + at + len(extra[at : at + 256]), dtype=np.int64))
            index.search(queries[batches % len(queries)], k)
            batches += 1
        _emit({"bench": "ann_libraries", "impl": index.name, "what": "insert", "batch": 256,
               "per_s": round(len(extra) / (time.perf_counter() - start))})
        all_rows = np.concatenate([data, extra])
        alive = np.ones(len(all_rows), dtype=bool)
        gone = np.random.default_rng(1).choice(len(all_rows), len(all_rows) // 10, replace=False)
        alive[gone] = False
        try:
            start = time.perf_counter()
            index.delete(gone.astype(np.int64))
            delete_s = time.perf_counter() - start
        except NotImplementedError as exc:
            _emit({"bench": "ann_libraries", "impl": index.name, "what": "delete", "unsupported": str(exc)})
        else:
            truth_after = exact_top(all_rows, queries, k, alive)
            _, found = p50_ms(lambda q: index.search(q, k), queries)
            _emit({"bench": "ann_libraries", "impl": index.name, "what": "delete-10pct", "seconds": round(delete_s, 3),
                   "recall_at_10": round(recall(found, truth_after), 4),
                   "deleted_returned": int(np.isin(found, gone).sum())})
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "index")
            start = time.perf_counter()
            index.save(path)
            save_s = time.perf_counter() - start
            start = time.perf_counter()
            index.load(path)
            load_s = time.perf_counter() - start
            _emit({"bench": "ann_libraries", "impl": index.name, "what": "persist", "save_s": round(save_s, 3),
                   "load_s": round(load_s, 3), "bytes": os.path.getsize(path)})
        del index


if __name__ == "__main__":
    main()
