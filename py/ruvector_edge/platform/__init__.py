"""Choose the providers for the runtime we are in, once, at start-up.

This is the only place that tells CPython from Pyodide; the core receives a
`Runtime` and never asks.
"""

from __future__ import annotations

import functools
import sys

from .base import Clock, CryptoProvider, FakeClock, RandomSource, Runtime

__all__ = ["Clock", "CryptoProvider", "FakeClock", "RandomSource", "Runtime", "default_codec", "default_embedder", "default_gun_graph", "default_runtime", "default_sandbox", "default_vector_kernel", "open_artifact_backend", "open_memory_store"]

_default: Runtime | None = None


def default_runtime() -> Runtime:
    """The runtime for this interpreter: WebCrypto bridges under Pyodide, PyNaCl/cryptography natively."""
    global _default
    if _default is None:
        if sys.platform == "emscripten":
            from .browser import browser_runtime

            _default = browser_runtime()
        else:
            from .native import native_runtime

            _default = native_runtime()
    return _default


def default_vector_kernel(dim: int, persist_as: str = ""):
    """The vector kernel for this runtime: the browser's (numpy, else JS Float32Array) under Pyodide;
    natively exact numpy search with an HNSW graph (hnswlib, the [index] extra) once a memory is large,
    else exact search alone (said once in the log), else pure Python. `persist_as` (an agent id) keeps
    the browser's graph in IndexedDB across reloads; natively the graph lives beside the SQLite store."""
    if sys.platform == "emscripten":
        from ..memory.browser import browser_default_kernel

        return browser_default_kernel(dim, persist_as)
    try:
        from ..memory.hnsw_index import HnswKernel
    except ImportError as error:
        _say_exact(str(error))
    else:
        return HnswKernel(dim)
    from ..memory.kernels import default_kernel

    return default_kernel(dim)


@functools.cache
def _say_exact(reason: str) -> None:
    import logging

    logging.getLogger(__name__).warning("memory search: exact only, no HNSW index (pip install '.[index]'): %s", reason)


def default_embedder(dim: int):
    """The text embedder for this runtime: all-MiniLM-L6-v2 when `dim` is its 384 and the model is at hand
    (onnxruntime with the [embeddings] extra natively, onnxruntime-web when the app serves the model under
    Pyodide), else feature hashing (said once in the log)."""
    from ..memory.embedder import HashingEmbedder

    if dim != 384:
        _say_hashing(f"MiniLM makes 384-dimensional vectors, this memory holds {dim}")
        return HashingEmbedder(dim)
    minilm = _browser_minilm() if sys.platform == "emscripten" else _native_minilm()
    return HashingEmbedder(dim) if minilm is None else minilm


@functools.cache
def _browser_minilm():
    """One BrowserEmbedder per worker (waiting for the model the worker loads), or None."""
    from ..errors import ProviderUnavailable
    from ..memory.browser_embedder import BrowserEmbedder

    try:
        return BrowserEmbedder.open()
    except ProviderUnavailable as error:
        _say_hashing(str(error))
        return None


@functools.cache
def _native_minilm():
    """One OnnxEmbedder per process (the session is read-only and thread-safe), or None."""
    from ..errors import ProviderUnavailable

    try:
        from ..memory.onnx_embedder import OnnxEmbedder

        return OnnxEmbedder()
    except ProviderUnavailable as error:
        _say_hashing(str(error))
        return None


@functools.cache
def _say_hashing(reason: str) -> None:
    import logging

    logging.getLogger(__name__).warning("embeddings: using feature hashing (lexical, not semantic): %s", reason)


def default_codec():
    """The LZ4/deflate codec for this runtime: npm lz4-wasm through the FFI under Pyodide, the `lz4` package natively."""
    if sys.platform == "emscripten":
        from ..compression.browser_codec import JsLz4Codec

        return JsLz4Codec()
    from ..compression.lz4codec import NativeLz4Codec

    return NativeLz4Codec()


def default_gun_graph(relays):
    """GunSwarm's graph for this runtime: GUN.js in the worker through the FFI under Pyodide, our GunEngine natively."""
    if sys.platform == "emscripten":
        from ..gun.browser import BrowserGunGraph

        return BrowserGunGraph(relays)
    from ..gun.native import NativeGunGraph

    return NativeGunGraph(relays)


def default_sandbox():
    """The WebAssembly task sandbox for this runtime: a dedicated Web Worker under Pyodide, wasmtime natively."""
    if sys.platform == "emscripten":
        from ..tasks.browser_sandbox import BrowserSandbox

        return BrowserSandbox()
    from ..tasks.sandbox import NativeSandbox

    return NativeSandbox()


async def _open_indexeddb(store_class, agent_id: str, what: str):
    """`await store_class.open(agent_id)`, or None with a warning when the browser refuses IndexedDB
    (private mode, quota): the page then runs without persistence rather than without an agent."""
    from ..errors import ProviderUnavailable

    try:
        return await store_class.open(agent_id)
    except ProviderUnavailable as error:
        import logging

        logging.getLogger(__name__).warning("%s will not persist: %s", what, error)
        return None


async def open_memory_store(agent_id: str, sqlite_path: str | None = None, *, persist: bool = True):
    """Where an agent's memories persist: IndexedDB (per agent id) under Pyodide when `persist`,
    SQLite natively when a path is given, else None (memory only)."""
    if sys.platform == "emscripten":
        from ..memory.browser import IndexedDbMemoryStore

        return await _open_indexeddb(IndexedDbMemoryStore, agent_id, "memories") if persist else None
    if sqlite_path:
        from ..memory.persistence import SqliteMemoryStore

        return SqliteMemoryStore(sqlite_path)
    return None


async def open_artifact_backend(agent_id: str, directory: str | None = None, *, persist: bool = True):
    """Where an agent's artifact blocks persist: IndexedDB (per agent id) under Pyodide when `persist`,
    a directory natively when one is given, else None (the in-memory LRU cache only)."""
    if sys.platform == "emscripten":
        from ..artifacts.browser_store import IndexedDbBlockStore

        return await _open_indexeddb(IndexedDbBlockStore, agent_id, "artifacts") if persist else None
    if directory:
        from ..artifacts.blockstore import DiskBlockStore

        return DiskBlockStore(directory)
    return None
