"""Semantic embeddings natively: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime, tokenised by HF `tokenizers`.

This is the sentence-transformers recipe of the model, reproduced without
PyTorch: WordPiece ids truncated at 256 tokens (the model's `max_seq_length`;
the bundled `tokenizer.json` says 128 with fixed padding, which is the
tokenizer's default, not the model's), the encoder's last hidden state
mean-pooled over the attention mask, then L2-normalised. So "how does auth
work?" lands near "API authentication flow uses signed JWTs" although they
share no word.

Texts are embedded in batches of similar length: padding a short text to the
longest one in its batch costs the encoder the padded tokens, and sorting by
length first keeps that waste small without changing any vector (attention
masks make each row independent of its batch mates).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import MalformedMessage, ProviderUnavailable
from .embedder import Embedder
from .model_files import ModelFiles, load_minilm_files

try:
    import onnxruntime as ort
    from tokenizers import Tokenizer
except ImportError as exc:
    raise ProviderUnavailable("semantic embeddings need the 'embeddings' extra: pip install 'ruvector-edge[embeddings]'") from exc

__all__ = ["OnnxEmbedder"]

MAX_TOKENS = 256
BATCH = 32


class OnnxEmbedder(Embedder):
    """all-MiniLM-L6-v2 (384 dimensions), mean-pooled and L2-normalised; `embed_many` gives float32[n, 384]."""

    dim = 384

    def __init__(self, files: ModelFiles | None = None, threads: int = 1) -> None:
        """`threads`: onnxruntime's intra-op threads; one by default, as the machine is shared with the swarm's I/O."""
        files = load_minilm_files() if files is None else files
        self.model_id = files.model_id
        self.tokenizer = Tokenizer.from_str(files.tokenizer_json.decode("utf-8"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(files.onnx, options, providers=["CPUExecutionProvider"])

    def embed_many(self, texts: Sequence[str]) -> np.ndarray:
        for text in texts:
            if type(text) is not str or not text.strip():
                raise MalformedMessage("text to embed must be a non-empty string")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        lengths = [len(text) for text in texts]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        for start in range(0, len(order), BATCH):
            rows = order[start : start + BATCH]
            out[rows] = self._embed_batch([texts[i] for i in rows])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        hidden = self._session.run(
            ["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
