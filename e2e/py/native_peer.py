"""A native (CPython, PyNaCl/cryptography) swarm member driven over stdin/stdout JSON lines.

e2e/crossruntime.spec.js runs it beside the Pyodide worker so envelopes sealed in
one runtime are opened in the other. One request per line in, one answer per
line out; it exits at end of input, so it cannot outlive the test.
"""

import asyncio

from line_server import serve  # e2e/py/, the script's own directory
from ruvector_edge.errors import RejectedInput
from ruvector_edge.p2p import P2PSwarm


async def main() -> None:
    swarm = None

    async def handle(cmd: str, req: dict) -> dict | None:
        nonlocal swarm
        if cmd == "init":
            key = bytes.fromhex(req["key"]) if req.get("key") else None
            swarm = await P2PSwarm.create(req.get("agent_id", "native-peer"), key, capabilities=["native"])
            return {"key": swarm.swarm_key.key.hex(), "registration": swarm.registration.to_json().decode()}
        if cmd == "register":
            await swarm.register_member(req["registration"])
            return {}
        if cmd == "publish":
            return {"frame": (await swarm.publish(req["topic"], bytes.fromhex(req["payload"]))).frame.decode()}
        if cmd == "direct":
            return {"frame": (await swarm.send_direct(req["peer"], bytes.fromhex(req["payload"]))).frame.decode()}
        if cmd == "receive":
            try:
                msg = await swarm.receive(req["frame"])
            except RejectedInput as exc:
                return {"rejected": type(exc).__name__}
            return {"sender_id": msg.sender_id, "topic": msg.topic, "payload": msg.payload.hex(), "direct": msg.direct}
        return None

    await serve(handle)


if __name__ == "__main__":
    asyncio.run(main())
