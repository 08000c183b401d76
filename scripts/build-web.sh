#!/usr/bin/env bash
# Build everything the browser app serves: the project's wheel, the raw Pyodide
# core files and the Vite bundle in dist/. Idempotent; safe to rerun.
# Pyodide's files are copied raw (not bundled) because Vite would transform
# pyodide.asm.mjs and break it; the wheel is installed in the worker by URL.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"

step() { printf '[build-web] %s\n' "$*"; }

step "building wheel with $PYTHON"
rm -rf build/wheel && mkdir -p build
"$PYTHON" -m build --wheel --outdir build/wheel . >build/wheel-build.log 2>&1 || {
  cat build/wheel-build.log 2>/dev/null >&2 || true
  echo "[build-web] wheel build failed" >&2; exit 1; }
WHEEL_PATH="$(ls -1 build/wheel/ruvector_edge-*-py3-none-any.whl | head -n 1)"
WHEEL="$(basename "$WHEEL_PATH")"
VERSION="$(echo "$WHEEL" | cut -d- -f2)"
step "wheel $WHEEL (version $VERSION)"

step "copying wheel to web/public/wheels/"
rm -rf web/public/wheels
mkdir -p web/public/wheels
cp "$WHEEL_PATH" web/public/wheels/
printf '{"wheel": "%s", "version": "%s"}\n' "$WHEEL" "$VERSION" >web/public/wheels/manifest.json

step "copying Pyodide core files to web/public/pyodide/"
mkdir -p web/public/pyodide
for f in pyodide.mjs pyodide.asm.mjs pyodide.asm.wasm python_stdlib.zip pyodide-lock.json; do
  [ -f "node_modules/pyodide/$f" ] || { echo "[build-web] missing node_modules/pyodide/$f (run npm ci)" >&2; exit 1; }
  cp "node_modules/pyodide/$f" web/public/pyodide/
done

step "vite build -> dist/"
npx --no-install vite build --logLevel warn

# After the Vite build (it empties dist/), never in web/public: the 23 MB model must not reach git.
step "copying onnxruntime-web's wasm and its glue to dist/ort/"
mkdir -p dist/ort
for f in ort-wasm-simd-threaded.wasm ort-wasm-simd-threaded.mjs; do
  [ -f "node_modules/onnxruntime-web/dist/$f" ] || { echo "[build-web] missing node_modules/onnxruntime-web/dist/$f (run npm ci)" >&2; exit 1; }
  cp "node_modules/onnxruntime-web/dist/$f" dist/ort/
done

step "copying the MiniLM model and tokenizer to dist/models/minilm/ (sha256-checked)"
"$PYTHON" - dist/models/minilm <<'PY' || step "no [embeddings] extra: the app will fall back to feature hashing"
import json, sys
from pathlib import Path
from ruvector_edge.memory import model_files

files = model_files.load_minilm_files()  # refuses files whose sha256 is not the pinned one
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
(out / "model.onnx").write_bytes(files.onnx)
(out / "tokenizer.json").write_bytes(files.tokenizer_json)
(out / "manifest.json").write_text(json.dumps({
    "model_id": files.model_id, "onnx_sha256": model_files.ONNX_SHA256,
    "tokenizer_sha256": model_files.TOKENIZER_SHA256, "onnx_bytes": len(files.onnx)}))
PY

step "done: dist/ ready (wheel $WHEEL)"
