"""Semantic embeddings in the browser: the MiniLM file natives run, on onnxruntime-web through web/bridges/embed.js.

Imported only under Pyodide. The worker starts loading the model with
Pyodide (23 MB, and seconds to build a session); `open()` waits for it. The
vectors are the native ones to ~1e-7 (same file, same recipe: 256 tokens,
mean pooling, L2 norm), so entries carry the same model id and a browser's
memories are searched natively without re-embedding, and vice versa.

Tokenising is `wordpiece.WordPiece` (HF tokenizers' ids, pure Python). The
`Embedder` interface is synchronous (a memory re-embeds synced entries inside
its import), while onnxruntime-web answers with a promise: `run_sync` waits
for it through JSPI, which the worker's Python entry points allow.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import js  # type: ignore[import-not-found]
from pyodide.ffi import run_sync  # type: ignore[import-not-found]

from ..errors import MalformedMessage, ModelIntegrityError, ProviderUnavailable
from ..platform.jsffi import js_bridge, to_u8
from .embedder import Embedder
from .model_files import MINILM, ONNX_SHA256, TOKENIZER_SHA256, check_sha256
from .wordpiece import WordPiece

__all__ = ["BrowserEmbedder"]

MAX_TOKENS = 256  # the model's max_seq_length, as onnx_embedder.MAX_TOKENS (which needs numpy to import)


class BrowserEmbedder(Embedder):
    """all-MiniLM-L6-v2 in the worker: `embed_many` gives one array('f') of 384 per text."""

    dim = 384
    model_id = MINILM

    def __init__(self, bridge, tokenizer: WordPiece) -> None:
        self._js = bridge
        self.tokenizer = tokenizer

    @classmethod
    def open(cls) -> BrowserEmbedder:
        """Wait for the worker's model; ProviderUnavailable when it is not served or failed to load,
        ModelIntegrityError when its files are not the pinned ones."""
        bridge = js_bridge("edgeEmbed", "web/bridges/embed.js")
        info = run_sync(bridge.ready())
        if not info.ok:
            raise ProviderUnavailable(info.reason)
        if info.onnxSha256 != ONNX_SHA256 or info.modelId != MINILM:
            raise ModelIntegrityError(f"the served model has sha256 {info.onnxSha256}, expected {ONNX_SHA256}")
        tokenizer_json = check_sha256(str(info.tokenizer).encode("utf-8"), TOKENIZER_SHA256, "models/minilm/tokenizer.json")
        return cls(bridge, WordPiece(tokenizer_json, MAX_TOKENS))

    def embed_many(self, texts: Sequence[str]) -> list[array]:
        for text in texts:
            if type(text) is not str or not text.strip():
                raise MalformedMessage("text to embed must be a non-empty string")
        if not texts:
            return []
        encoded = [self.tokenizer.encode(text) for text in texts]
        ids = array("i", [token for row in encoded for token in row])
        lens = array("I", [len(row) for row in encoded])
        out = run_sync(self._js.embedMany(js.Int32Array.new(to_u8(ids.tobytes()).buffer), js.Uint32Array.new(to_u8(lens.tobytes()).buffer)))
        flat = array("f")
        flat.frombytes(out.to_bytes())
        return [flat[i * self.dim : (i + 1) * self.dim] for i in range(len(texts))]
