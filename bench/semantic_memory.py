"""Semantic memory natively: our MiniLM embedder beside raw onnxruntime on the same model file, one run.

Prints one JSON line per (implementation, batch size). Goal (issue 13):
`OnnxEmbedder.embed_many` ≥ 0.9× the throughput of a bare
`InferenceSession.run` fed by the same tokenizer, at batch 1 and 32 — our
overhead is the length sort, the input arrays, pooling and normalisation.
Both sides use one intra-op thread and the same generated sentences; each
mode is timed `--repeats` times, the two sides interleaved, and the median and best are printed (on a
shared machine the best is what the load hides). The ANN index lines come
with the native HNSW (not yet built).

Bounded: a fixed number of sentences and rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time

import numpy as np

from ruvector_edge.memory.model_files import load_minilm_files
from ruvector_edge.memory.onnx_embedder import MAX_TOKENS, OnnxEmbedder

WORDS = ("agent relay memory vector signed heartbeat swarm browser tab model search index token key "
         "garden weather river music coffee train city winter market doctor letter window").split()


def _emit(line: dict) -> None:
    print(json.dumps(line), flush=True)


def sentences(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 24))) for _ in range(count)]


class RawOnnx:
    """The floor: tokenizer + session.run + the same pooling, nothing else."""

    def __init__(self, embedder: OnnxEmbedder) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(load_minilm_files().onnx, options, providers=["CPUExecutionProvider"])
        self.tokenizer = embedder.tokenizer

    def embed_many(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        pooled = (hidden * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def rate(embed, texts: list[str], batch: int) -> float:
    start = time.perf_counter()
    for at in range(0, len(texts), batch):
        embed(texts[at : at + batch])
    return len(texts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    start = time.perf_counter()
    ours = OnnxEmbedder(threads=1)
    _emit({"bench": "semantic_memory", "what": "load", "seconds": round(time.perf_counter() - start, 3),
           "model": ours.model_id, "max_tokens": MAX_TOKENS, "loadavg_1m": round(os.getloadavg()[0], 2)})
    raw = RawOnnx(ours)
    texts = sentences(args.sentences)
    for batch in (1, 32):
        results: dict[str, list[float]] = {"raw-onnxruntime": [], "ruvector-edge": []}
        for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits both sides alike
            results["raw-onnxruntime"].append(rate(raw.embed_many, texts, batch))
            results["ruvector-edge"].append(rate(ours.embed_many, texts, batch))
        for name, rates in results.items():
            _emit({"bench": "semantic_memory", "what": "embed", "impl": name, "batch": batch,
                   "per_s_median": round(statistics.median(rates), 1), "per_s_best": round(max(rates), 1)})
        _emit({"bench": "semantic_memory", "what": "embed-ratio", "batch": batch,
               "ours_over_raw_median": round(statistics.median(results["ruvector-edge"]) / statistics.median(results["raw-onnxruntime"]), 3),
               "ours_over_raw_best": round(max(results["ruvector-edge"]) / max(results["raw-onnxruntime"]), 3), "goal": 0.9})


if __name__ == "__main__":
    main()
