#!/usr/bin/env bash
# The main job: set up, build the web app, start a relay serving it, print its URL,
# run the local swarm demo, and keep the relay up until Ctrl-C.
#   PORT=8080 HOST=127.0.0.1 bash scripts/run.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8080}"

bash scripts/setup.sh
bash scripts/build-web.sh

.venv/bin/edge-relay --listen "$HOST:$PORT" --web dist &
RELAY=$!
trap 'kill "$RELAY" 2>/dev/null || true; wait "$RELAY" 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do
  if .venv/bin/python -c "import urllib.request,sys; urllib.request.urlopen('http://$HOST:$PORT/healthz', timeout=1)" 2>/dev/null; then break; fi
  kill -0 "$RELAY" 2>/dev/null || { echo "[run] edge-relay exited (is port $PORT free? try PORT=8090)" >&2; exit 1; }
  sleep 0.1
done
echo
echo "  ruvector-edge web app: http://$HOST:$PORT/"
echo
.venv/bin/edge-demo
echo
echo "Relay still serving http://$HOST:$PORT/ — press Ctrl-C to stop."
wait "$RELAY"
