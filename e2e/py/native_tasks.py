"""Native side of e2e/tasks.spec.js, over stdin/stdout JSON lines: compiles the task tests' WAT, runs NativeSandbox and TaskExecutor, verifies receipts.

The WAT is taken from tests/test_tasks.py itself, so the browser runs exactly
the modules the native tests run. One request per line in, one answer per line
out; it exits at end of input, so it cannot outlive the test.
"""

import asyncio
import hashlib
import sys
from pathlib import Path

import wasmtime

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
import test_tasks  # noqa: E402  (the native tests' modules)
from line_server import serve  # noqa: E402  (e2e/py/, the script's own directory)

from ruvector_edge.artifacts import ArtifactStore  # noqa: E402
from ruvector_edge.errors import RejectedInput  # noqa: E402
from ruvector_edge.p2p import IdentityManager  # noqa: E402
from ruvector_edge.platform.base import Clock  # noqa: E402
from ruvector_edge.platform.native import NativeCryptoProvider  # noqa: E402
from ruvector_edge.tasks import Budgets, NativeSandbox, TaskEnvelope, TaskExecutor, TaskReceipt, verify_receipt  # noqa: E402

CRYPTO = NativeCryptoProvider()
MODULES = {
    **test_tasks.FAILS_BEFORE_ENTRY_WAT,
    **test_tasks.WRONG_TYPES_WAT,
    "good": test_tasks.GOOD_WAT,
    "imports": test_tasks.IMPORTS_WAT,
    "no_alloc": test_tasks.NO_ALLOC_WAT,
    "big_memory": test_tasks.GOOD_WAT.replace('(memory (export "memory") 1)', '(memory (export "memory") 128)'),
    "start_loop": test_tasks.GOOD_WAT.replace(
        '(memory (export "memory") 1)', '(memory (export "memory") 1) (func $forever (loop $l (br $l))) (start $forever)'),
    "recurse": f"""(module {test_tasks.ABI}
 (func $down (param i32) (result i64) (call $down (i32.add (local.get 0) (i32.const 1))))
 (func (export "deep") (param i32 i32) (result i64) (call $down (i32.const 0))))""",
    "bad_alloc": """(module (memory (export "memory") 1)
 (func (export "alloc") (param i32) (result i32) (i32.const -256))
 (func (export "sum") (param i32 i32) (result i64) (i64.const 0)))""",
    # SIMD is outside what the browser's fuel meter decodes: it must run unmetered and say so.
    "simd": f"""(module {test_tasks.ABI}
 (func (export "lanes") (param $p i32) (param $n i32) (result i64) (local $o i32)
   (local.set $o (call $alloc (i32.const 16)))
   (v128.store (local.get $o) (i32x4.add (v128.const i32x4 1 2 3 4) (v128.const i32x4 10 20 30 40)))
   (i64.or (i64.shl (i64.extend_i32_u (local.get $o)) (i64.const 32)) (i64.const 16))))""",
}


async def main() -> None:
    sandbox = NativeSandbox()
    requester = await IdentityManager.generate(CRYPTO)
    executor = TaskExecutor("native-exec", await IdentityManager.generate(CRYPTO), sandbox, ArtifactStore(),
                            clock=Clock(), crypto=CRYPTO)

    async def handle(cmd: str, req: dict) -> dict | None:
        if cmd == "modules":
            out = {name: wasmtime.wat2wasm(text).hex() for name, text in MODULES.items()}
        elif cmd == "run":
            result = sandbox.run(bytes.fromhex(req["module"]), req["entrypoint"], bytes.fromhex(req["input"]), Budgets(**req["budgets"]))
            out = {"status": result.status.value, "output_sha256": hashlib.sha256(result.output).hexdigest(), "output": result.output.hex(),
                   "fuel_used": result.fuel_used}
        elif cmd == "sweep":  # status and fuel at each fuel limit
            module, data = bytes.fromhex(req["module"]), bytes.fromhex(req["input"])
            runs = [sandbox.run(module, req["entrypoint"], data, Budgets(limit, 2, 5_000)) for limit in req["limits"]]
            out = {"runs": [[r.status.value, r.fuel_used] for r in runs]}
        elif cmd == "envelope":
            store = ArtifactStore()
            env = await TaskEnvelope(
                swarm="swarm-e2e", task_id=req["task_id"], module_cid=store.store_artifact(bytes.fromhex(req["module"])),
                entrypoint=req["entrypoint"], input_cid=store.store_artifact(bytes.fromhex(req["input"])),
                output_schema_hash=hashlib.sha256(b"u32le").digest(), budgets=Budgets(**req["budgets"]),
                requester="native-requester", deadline=2**52, priority=1,
            ).sign(requester)
            out = {"envelope": env.to_json().decode(), "requester_key": requester.ed25519_public.hex()}
        elif cmd == "execute":  # a native TaskExecutor's receipt for an envelope from "envelope"
            for blob in (req["module"], req["input"]):
                executor.artifacts.store_artifact(bytes.fromhex(blob))
            receipt = await executor.execute(TaskEnvelope.from_json(req["envelope"].encode()), requester.ed25519_public)
            out = {"status": receipt.status.value, "fuel_used": receipt.fuel_used, "memory_peak": receipt.memory_peak,
                   "detail": receipt.detail}
        elif cmd == "verify":
            store = ArtifactStore()
            for blob in req["artifacts"]:
                store.store_artifact(bytes.fromhex(blob))
            receipt = TaskReceipt.from_json(req["receipt"].encode())
            envelope = TaskEnvelope.from_json(req["envelope"].encode())
            try:
                await verify_receipt(receipt, envelope, bytes.fromhex(req["executor_key"]), store, crypto=CRYPTO)
                out = {"verified": True, "status": receipt.status.value, "fuel_used": receipt.fuel_used,
                       "memory_peak": receipt.memory_peak, "detail": receipt.detail}
            except RejectedInput as exc:
                out = {"verified": False, "rejected": type(exc).__name__, "why": str(exc)}
        else:
            return None
        return out

    try:
        await serve(handle)
    finally:
        sandbox.close()


if __name__ == "__main__":
    asyncio.run(main())
