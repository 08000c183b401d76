"""The int8 MiniLM against the fp32 weights of the same model, and paraphrase retrieval for both embedders."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from minilm_fixtures import Fp32MiniLM, minilm
from ruvector_edge.memory import HashingEmbedder

PARAPHRASES = json.loads((Path(__file__).parent / "data" / "paraphrases.json").read_text())["pairs"]

_SUBJECTS = ["the agent", "a browser tab", "my neighbour", "the old relay", "our coordinator", "a small drone",
             "the database", "every student", "the night shift", "a curious cat"]
_VERBS = ["stores", "forgets", "sends", "verifies", "compresses", "rejects", "remembers", "searches for",
          "signs", "downloads"]
_OBJECTS = ["the encrypted report", "three hundred memories", "a signed heartbeat", "yesterday's weather",
            "the grocery list", "an unexpected error", "the café menu", "a very long URL", "twelve patterns",
            "the résumé of a naïve coöperator"]
_TAILS = ["", " before midnight", " without asking anyone", " because the link dropped", " again and again",
          " in under a second"]


def generated_sentences(count: int, seed: int = 13) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_TAILS)}".capitalize()
            for _ in range(count)]


def test_int8_model_agrees_with_the_fp32_weights():
    embedder = minilm()
    reference = Fp32MiniLM()
    texts = generated_sentences(300) + [query for pair in PARAPHRASES for query in pair]
    int8 = embedder.embed_many(texts)
    fp32 = reference.embed_many([embedder.tokenizer.encode(text).ids for text in texts])
    cosines = (int8.astype(np.float64) * fp32).sum(axis=1)
    print(f"int8 vs fp32 cosine over {len(texts)} sentences: min {cosines.min():.4f} mean {cosines.mean():.4f}")
    assert cosines.min() >= 0.98


def recall_at_1(embedder) -> float:
    queries = embedder.embed_many([query for query, _ in PARAPHRASES])
    documents = embedder.embed_many([document for _, document in PARAPHRASES])
    best = (np.asarray(queries, dtype=np.float64) @ np.asarray(documents, dtype=np.float64).T).argmax(axis=1)
    return float((best == np.arange(len(PARAPHRASES))).mean())


def test_paraphrase_retrieval_minilm_finds_what_hashing_cannot():
    semantic = recall_at_1(minilm())
    lexical = recall_at_1(HashingEmbedder(384))
    print(f"paraphrase recall@1 over {len(PARAPHRASES)} pairs: MiniLM {semantic:.3f}, hashing {lexical:.3f}")
    assert semantic >= 0.85
    assert semantic > lexical
