#!/usr/bin/env bash
# A local federation to try: a 3-node NATS cluster (JetStream) and 3 edge-relays, one per node,
# and one invite that lists all three relays (agents fail over between them in order).
#   bash scripts/cluster.sh            ports: NATS 4222-4224 (routes 6222-6224), relays 8081-8083
#   edge-agent --coordinator '<the invite it prints>'
# Ctrl-C stops everything; data lives in build/cluster (delete it to start afresh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
NATS_SERVER="$(command -v nats-server || echo /usr/sbin/nats-server)"
[ -x "$NATS_SERVER" ] || { echo "[cluster] nats-server missing: bash scripts/setup.sh installs it" >&2; exit 1; }
[ -x .venv/bin/edge-relay ] || { echo "[cluster] run bash scripts/setup.sh first" >&2; exit 1; }
DATA=build/cluster
mkdir -p "$DATA"
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

ROUTES="nats://127.0.0.1:6222,nats://127.0.0.1:6223,nats://127.0.0.1:6224"
for i in 0 1 2; do
  mkdir -p "$DATA/n$i"
  # max_payload 2MB: a relay forwards frames up to its own 2 MiB limit (NATS' default is 1 MiB).
  printf 'max_payload: 2097152\n' > "$DATA/n$i.conf"
  "$NATS_SERVER" -c "$DATA/n$i.conf" -a 127.0.0.1 -p $((4222 + i)) -js -sd "$DATA/n$i" -n "n$i" \
    --cluster_name edge --cluster "nats://127.0.0.1:$((6222 + i))" --routes "$ROUTES" >"$DATA/n$i.log" 2>&1 &
  PIDS+=($!)
done
NATS="nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"
for _ in $(seq 1 100); do  # JetStream is ready once the cluster has elected its meta leader (bounded wait)
  grep -q "JetStream cluster new metadata leader\|Self is new JetStream cluster metadata leader" "$DATA"/n*.log && break
  sleep 0.2
done
URLS=()
for i in 0 1 2; do
  port=$((8081 + i))
  .venv/bin/edge-relay --listen "127.0.0.1:$port" --data-dir "$DATA/relay$i" --nats "$NATS" --nats-replicas 3 \
    --relay-id "relay$i" >"$DATA/relay$i.log" 2>&1 &
  PIDS+=($!)
  URLS+=("ws://127.0.0.1:$port/ws")
done
for i in 0 1 2; do
  for _ in $(seq 1 100); do grep -q "listening" "$DATA/relay$i.log" && break; sleep 0.2; done
  grep -q "listening" "$DATA/relay$i.log" || { echo "[cluster] relay$i did not start:"; cat "$DATA/relay$i.log"; exit 1; }
done
KEY="$(.venv/bin/python -c 'import os; print(os.urandom(32).hex())')"
INVITE="$(IFS=,; echo "${URLS[*]}")#swarm_key=$KEY"
echo "[cluster] NATS $NATS, relays ${URLS[*]} (logs in $DATA)"
echo "[cluster] invite: $INVITE"
echo "[cluster] try:    .venv/bin/edge-agent --coordinator '$INVITE'"
wait
