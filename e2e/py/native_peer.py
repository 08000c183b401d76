"""A native (CPython, PyNaCl/cryptography) swarm member driven over stdin/stdout JSON lines.

e2e/crossruntime.spec.js runs it beside the Pyodide worker so envelopes sealed in
one runtime are opened in the other. One request per line in, one answer per
line out; it exits at end of input, so it cannot outlive the test.
"""

import asyncio
import json
import sys

from ruvector_edge.errors import RejectedInput
from ruvector_edge.p2p import P2PSwarm


async def main() -> None:
    swarm = None
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        req = json.loads(line)
        cmd = req["cmd"]
        try:
            if cmd == "init":
                key = bytes.fromhex(req["key"]) if req.get("key") else None
                swarm = await P2PSwarm.create(req.get("agent_id", "native-peer"), key, capabilities=["native"])
                out = {"key": swarm.swarm_key.key.hex(), "registration": swarm.registration.to_json().decode()}
            elif cmd == "register":
                await swarm.register_member(req["registration"])
                out = {}
            elif cmd == "publish":
                out = {"frame": (await swarm.publish(req["topic"], bytes.fromhex(req["payload"]))).frame.decode()}
            elif cmd == "direct":
                out = {"frame": (await swarm.send_direct(req["peer"], bytes.fromhex(req["payload"]))).frame.decode()}
            elif cmd == "receive":
                try:
                    msg = await swarm.receive(req["frame"])
                    out = {"sender_id": msg.sender_id, "topic": msg.topic, "payload": msg.payload.hex(), "direct": msg.direct}
                except RejectedInput as exc:
                    out = {"rejected": type(exc).__name__}
            else:
                out = {"error": f"unknown command {cmd}"}
        except Exception as exc:  # report, keep serving: the test decides what is fatal
            out = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
