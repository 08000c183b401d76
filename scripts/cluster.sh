#!/usr/bin/env bash
# A local federation to try: a 3-node NATS cluster (JetStream) and 3 edge-relays, one per node, each
# serving the web app; prints one page link and one agent invite that list all three relays (agents
# and pages fail over between them in order). An open swarm: the key is in the link.
#   bash scripts/cluster.sh            ports: NATS 4222-4224 (routes 6222-6224), relays 8081-8083
#   NATS_PORT=14222 ROUTE_PORT=16222 RELAY_PORT=18081 CLUSTER_DIR=/tmp/c bash scripts/cluster.sh
#   edge-agent --coordinator '<the invite it prints>'
# Ctrl-C (or SIGTERM) stops everything; data lives in build/cluster (delete it to start afresh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HOST=127.0.0.1
NATS_PORT="${NATS_PORT:-4222}"
ROUTE_PORT="${ROUTE_PORT:-6222}"
RELAY_PORT="${RELAY_PORT:-8081}"
DATA="${CLUSTER_DIR:-build/cluster}"
NATS_SERVER="$(command -v nats-server || echo /usr/sbin/nats-server)"
[ -x "$NATS_SERVER" ] || { echo "[cluster] nats-server missing: bash scripts/setup.sh installs it" >&2; exit 1; }
[ -x .venv/bin/edge-relay ] || { echo "[cluster] run bash scripts/setup.sh first" >&2; exit 1; }
[ -f dist/index.html ] || bash scripts/build-web.sh  # the page the link opens
mkdir -p "$DATA"
NATS_PIDS=()
RELAY_PIDS=()
# Stop the relays first, while NATS still answers their drain (a relay whose NATS is gone takes ~30 s to
# give up on it), then the nodes; whatever has not stopped after 10 s is killed.
stop() {
  for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    local alive=0
    for pid in "$@"; do if kill -0 "$pid" 2>/dev/null; then alive=1; fi; done
    if [ "$alive" = 0 ]; then return 0; fi  # explicit: a bare return in a trap returns the signal's status
    sleep 0.1
  done
  for pid in "$@"; do kill -9 "$pid" 2>/dev/null || true; done
}
cleanup() {
  trap - EXIT INT TERM
  stop "${RELAY_PIDS[@]}"
  stop "${NATS_PIDS[@]}"
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

ROUTES="nats://$HOST:$ROUTE_PORT,nats://$HOST:$((ROUTE_PORT + 1)),nats://$HOST:$((ROUTE_PORT + 2))"
for i in 0 1 2; do
  mkdir -p "$DATA/n$i"
  # max_payload 2MB: a relay forwards frames up to its own 2 MiB limit (NATS' default is 1 MiB).
  printf 'max_payload: 2097152\n' > "$DATA/n$i.conf"
  "$NATS_SERVER" -c "$DATA/n$i.conf" -a "$HOST" -p $((NATS_PORT + i)) -js -sd "$DATA/n$i" -n "n$i" \
    --cluster_name edge --cluster "nats://$HOST:$((ROUTE_PORT + i))" --routes "$ROUTES" >"$DATA/n$i.log" 2>&1 &
  NATS_PIDS+=($!)
done
NATS="nats://$HOST:$NATS_PORT,nats://$HOST:$((NATS_PORT + 1)),nats://$HOST:$((NATS_PORT + 2))"
for _ in $(seq 1 100); do  # JetStream is ready once the cluster has elected its meta leader (bounded wait)
  grep -q "JetStream cluster new metadata leader\|Self is new JetStream cluster metadata leader" "$DATA"/n*.log && break
  sleep 0.2
done
URLS=()
for i in 0 1 2; do
  port=$((RELAY_PORT + i))
  .venv/bin/edge-relay --listen "$HOST:$port" --web dist --data-dir "$DATA/relay$i" --nats "$NATS" --nats-replicas 3 \
    --relay-id "relay$i" >"$DATA/relay$i.log" 2>&1 &
  RELAY_PIDS+=($!)
  URLS+=("ws://$HOST:$port/ws")
done
for i in 0 1 2; do
  for _ in $(seq 1 150); do grep -q "listening" "$DATA/relay$i.log" && break; sleep 0.2; done
  grep -q "listening" "$DATA/relay$i.log" || { echo "[cluster] relay$i did not start:"; cat "$DATA/relay$i.log"; exit 1; }
done
KEY="$(.venv/bin/python -c 'import os; print(os.urandom(32).hex())')"
RELAYS="$(IFS=,; echo "${URLS[*]}")"
INVITE="$RELAYS#swarm_key=$KEY"
echo "[cluster] NATS $NATS, relays ${URLS[*]} (logs in $DATA)"
# The page's fragment: the swarm key and the relay list (web/main.js), so a tab fails over like an agent.
echo "[cluster] web app: http://$HOST:$RELAY_PORT/#swarm_key=$KEY&relays=$RELAYS"
echo "[cluster] invite: $INVITE"
echo "[cluster] try:    .venv/bin/edge-agent --coordinator '$INVITE'"
wait
