#!/usr/bin/env bash
# The main job: set up, build the web app, then start a coordinator that runs the relay
# (serving the web app, /ws for agents, a shared-memory hub for local agents) and founds an
# admitted swarm, two workers over WebSocket and a scout over shared memory that join it with
# its invite; run the local demo; print the web app's URL (an invite link good for a few tabs).
# The relay keeps its GUN graph and the admin state in build/relay-data/, the local agents their
# membership in build/agents/ (delete both to start a new, empty swarm).
# Everything stays up until Ctrl-C.        PORT=8080 HOST=127.0.0.1 bash scripts/run.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8080}"
HUB="edge-run-$$"

bash scripts/setup.sh
bash scripts/build-web.sh

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

mkdir -p build
# An admitted swarm: the coordinator is its admin and writes one invite, good for USES joins: the two
# workers and the scout take three, the rest are for browser tabs. The swarm key is in no link.
USES=8
rm -f build/invite.link
# The swarm is kept across runs: the admin's identity and state in build/relay-data/admin/, each local
# agent's identity, certificate and epoch key in build/agents/<id>/, so a second run's agents rejoin
# without spending the invite. Delete build/relay-data/admin and build/agents to found a new swarm.
# With no build/agents/ the local agents hold no membership and the admin would refuse their ids under
# fresh keys, so a new swarm is founded (the GUN graph is kept).
[ -d build/agents ] || rm -rf build/relay-data/admin
.venv/bin/edge-coordinator --id coordinator-001 --listen "$HOST:$PORT" --web dist --shm-hub "$HUB" --data-dir build/relay-data \
  --invite-uses "$USES" --invite-hours 12 --invite-file build/invite.link --status-every 10 >build/coordinator.log 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do
  [ -s build/invite.link ] && break
  kill -0 "${PIDS[0]}" 2>/dev/null || { cat build/coordinator.log >&2; echo "[run] the coordinator exited (is port $PORT free? try PORT=8090)" >&2; exit 1; }
  sleep 0.1
done
[ -s build/invite.link ] || { cat build/coordinator.log >&2; echo "[run] the coordinator wrote no invite within 20 s" >&2; exit 1; }
INVITE="$(cut -d'#' -f2- build/invite.link)"   # invite=TOKEN

.venv/bin/edge-agent --role worker --id worker-001 --data-dir build/agents/worker-001 --coordinator "ws://$HOST:$PORT/ws#$INVITE" --status-every 10 >build/worker-001.log 2>&1 &
PIDS+=($!)
.venv/bin/edge-agent --role worker --id worker-002 --data-dir build/agents/worker-002 --coordinator "ws://$HOST:$PORT/ws#$INVITE" --status-every 10 >build/worker-002.log 2>&1 &
PIDS+=($!)
.venv/bin/edge-agent --role scout --id scout-001 --data-dir build/agents/scout-001 --coordinator "shm://$HUB#$INVITE" --status-every 10 >build/scout-001.log 2>&1 &
PIDS+=($!)

echo
.venv/bin/edge-demo
sleep 1
echo
echo "  ruvector-edge is running (an admitted swarm: coordinator-001 is its admin):"
echo "    web app         http://$HOST:$PORT/#$INVITE"
echo "                    (an invite good for $((USES - 3)) more tabs within 12 h: open it, pick a role and an id;"
echo "                     a reloaded tab comes back with its certificate. The swarm key is not in the link.)"
echo "    agents connect  ws://$HOST:$PORT/ws#$INVITE   (the same invite, same uses)"
echo "    metrics         http://$HOST:$PORT/metrics"
echo "    local swarm     coordinator-001, worker-001, worker-002 (WebSocket), scout-001 (shared memory)"
echo "    logs            build/*.log   (coordinator's peer table: tail -f build/coordinator.log)"
echo "    relay data      build/relay-data/ (the GUN graph and the admin state), build/agents/ (the local agents'"
echo "                    memberships); stop and delete both to found a new, empty swarm"
echo
echo "Press Ctrl-C to stop."
tail -n +1 -f build/coordinator.log
