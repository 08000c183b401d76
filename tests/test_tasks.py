"""Tasks: signed envelopes, claims, the native wasmtime sandbox, receipts and the coordinator.

Modules are WAT text compiled here with wasmtime.wat2wasm; they follow the task
ABI documented in tasks/sandbox.py (exports memory, alloc, entrypoint (ptr, len) -> i64).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time

import pytest
import wasmtime

from ruvector_edge.artifacts import ArtifactStore
from ruvector_edge.errors import (
    BadSignature,
    LeaseHeld,
    MalformedMessage,
    ModuleRejected,
    ReceiptMismatch,
    StaleTimestamp,
    TaskDeadlinePassed,
    WrongSwarm,
    WrongType,
)
from ruvector_edge.p2p import IdentityManager
from ruvector_edge.platform.base import FakeClock
from ruvector_edge.platform.native import NativeCryptoProvider
from ruvector_edge.tasks import (
    Assign,
    Budgets,
    Claim,
    ClaimBook,
    Completed,
    Coordinator,
    Failed,
    NativeSandbox,
    SandboxResult,
    TaskEnvelope,
    TaskExecutor,
    TaskReceipt,
    TaskStatus,
    resolve_holder,
    spot_check,
    verify_receipt,
)

CRYPTO = NativeCryptoProvider()
SWARM = "swarm-t"
START = 1_800_000_000_000

# A bump allocator plus entrypoints: `sum` returns the byte sum as 4 little-endian bytes,
# `reverse` the input reversed, and the misbehaving ones.
ABI = """
 (memory (export "memory") 1)
 (global $top (mut i32) (i32.const 1024))
 (func $alloc (export "alloc") (param $n i32) (result i32) (local $p i32)
   (local.set $p (global.get $top))
   (global.set $top (i32.add (global.get $top) (local.get $n)))
   (local.get $p))
"""
GOOD_WAT = f"""(module {ABI}
 (func (export "sum") (param $p i32) (param $n i32) (result i64) (local $i i32) (local $s i32) (local $o i32)
   (block $done (loop $next
     (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
     (local.set $s (i32.add (local.get $s) (i32.load8_u (i32.add (local.get $p) (local.get $i)))))
     (local.set $i (i32.add (local.get $i) (i32.const 1)))
     (br $next)))
   (local.set $o (call $alloc (i32.const 4)))
   (i32.store (local.get $o) (local.get $s))
   (i64.or (i64.shl (i64.extend_i32_u (local.get $o)) (i64.const 32)) (i64.const 4)))
 (func (export "reverse") (param $p i32) (param $n i32) (result i64) (local $i i32) (local $o i32)
   (local.set $o (call $alloc (local.get $n)))
   (block $done (loop $next
     (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
     (i32.store8 (i32.add (local.get $o) (local.get $i))
       (i32.load8_u (i32.add (local.get $p) (i32.sub (i32.sub (local.get $n) (local.get $i)) (i32.const 1)))))
     (local.set $i (i32.add (local.get $i) (i32.const 1)))
     (br $next)))
   (i64.or (i64.shl (i64.extend_i32_u (local.get $o)) (i64.const 32)) (i64.extend_i32_u (local.get $n))))
 (func (export "spin") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))
 (func (export "hog") (param i32 i32) (result i64)
   (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
   unreachable)
 (func (export "divzero") (param i32 i32) (result i64) (i64.div_u (i64.const 1) (i64.const 0)))
 (func (export "badout") (param i32 i32) (result i64) (i64.const 0x7fffffff00000010))
)"""
IMPORTS_WAT = f"""(module (import "env" "clock" (func $clock (result i64))) {ABI}
 (func (export "sum") (param i32 i32) (result i64) (call $clock)))"""
NO_ALLOC_WAT = """(module (memory (export "memory") 1) (func (export "sum") (param i32 i32) (result i64) (i64.const 0)))"""

MEMORY_DECL = '(memory (export "memory") 1)'
# Modules that export the ABI but fail before the entrypoint runs: while instantiating (a segment
# outside its memory or table) or in their start function. SIMD keeps the browser's fuel meter out
# (e2e/tasks.spec.js), so there the `simd_` ones fail inside `new WebAssembly.Instance` itself.
FAILS_BEFORE_ENTRY_WAT = {
    name: GOOD_WAT.replace(MEMORY_DECL, f"{MEMORY_DECL} {decls}")
    for name, decls in {
        "data_outside_memory": '(data (i32.const 65535) "xy")',
        "elem_outside_table": "(table 1 funcref) (func $nop) (elem (i32.const 3) $nop)",
        "start_traps": "(func $boom unreachable) (start $boom)",
        "start_recurses": "(func $down (call $down)) (start $down)",
        "simd_start_traps": "(func $boom (drop (v128.const i64x2 0 0)) unreachable) (start $boom)",
        "simd_start_recurses": "(func $down (drop (v128.const i64x2 0 0)) (call $down)) (start $down)",
    }.items()
}
# Modules whose exports carry the ABI's names with the wrong types.
_ENTRY = '(func (export "sum") (param i32 i32) (result i64) (i64.const 0))'
WRONG_TYPES_WAT = {
    "alloc_takes_i64": f'(module {MEMORY_DECL} (func (export "alloc") (param i64) (result i32) (i32.const 0)) {_ENTRY})',
    "alloc_returns_nothing": f'(module {MEMORY_DECL} (func (export "alloc") (param i32)) {_ENTRY})',
    "alloc_is_a_global": f'(module {MEMORY_DECL} (global (export "alloc") i32 (i32.const 0)) {_ENTRY})',
    "entry_returns_i32": f"""(module {ABI} (func (export "sum") (param i32 i32) (result i32) (i32.const 0)))""",
    "memory_is_a_global": f"""(module (memory 1) (global (export "memory") i32 (i32.const 0))
 (func (export "alloc") (param i32) (result i32) (i32.const 0)) {_ENTRY})""",
}

GOOD = wasmtime.wat2wasm(GOOD_WAT)
BUDGETS = Budgets(fuel_limit=1_000_000, memory_mb=2, timeout_ms=2_000)


@pytest.fixture(scope="module")
def sandbox():
    with NativeSandbox() as box:
        yield box


async def _identity() -> IdentityManager:
    return await IdentityManager.generate(CRYPTO)


async def _envelope(requester, store, entrypoint="sum", data=b"\x01\x02\x03", budgets=BUDGETS, task_id="t1", module=GOOD, **kw):
    unsigned = TaskEnvelope(
        swarm=SWARM,
        task_id=task_id,
        module_cid=store.store_artifact(module),
        entrypoint=entrypoint,
        input_cid=store.store_artifact(data),
        output_schema_hash=hashlib.sha256(b"u32le").digest(),
        budgets=budgets,
        requester="req",
        deadline=kw.pop("deadline", START + 60_000),
        priority=kw.pop("priority", 5),
        **kw,
    )
    return await unsigned.sign(requester)


async def _executor(sandbox, store, clock, name="exec-a"):
    return TaskExecutor(name, await _identity(), sandbox, store, clock=clock, crypto=CRYPTO)


# Envelope ----------------------------------------------------------------------------------

async def test_envelope_signs_round_trips_and_decodes_strictly():
    requester, store = await _identity(), ArtifactStore()
    env = await _envelope(requester, store)
    await env.verify(CRYPTO, requester.ed25519_public, swarm_id=SWARM)
    again = TaskEnvelope.from_json(env.to_json())
    assert again == env and again.envelope_hash() == env.envelope_hash()
    obj = json.loads(env.to_json())
    for mutate in (
        lambda o: o.update(extra=1),
        lambda o: o.pop("priority"),
        lambda o: o["budgets"].update(fuel_limit=0),
        lambda o: o["budgets"].update(spare=1),
        lambda o: o.update(entrypoint="no spaces"),
        lambda o: o.update(module_cid="not-a-cid"),
        lambda o: o.update(priority=True),
    ):
        bad = json.loads(json.dumps(obj))
        mutate(bad)
        with pytest.raises(MalformedMessage):
            TaskEnvelope.from_dict(bad)
    with pytest.raises(WrongType):
        TaskEnvelope.from_dict({**obj, "type": "task_receipt"})
    with pytest.raises(BadSignature):
        await dataclasses.replace(env, priority=9).verify(CRYPTO, requester.ed25519_public)
    with pytest.raises(BadSignature):
        await env.verify(CRYPTO, (await _identity()).ed25519_public)
    with pytest.raises(WrongSwarm):
        await env.verify(CRYPTO, requester.ed25519_public, swarm_id="other")


# Sandbox -----------------------------------------------------------------------------------

def test_sandbox_runs_a_correct_computation(sandbox):
    result = sandbox.run(GOOD, "sum", bytes(range(10)), BUDGETS)
    assert result.status is TaskStatus.SUCCESS and result.output == (45).to_bytes(4, "little")
    assert 0 < result.fuel_used < BUDGETS.fuel_limit and result.memory_peak == 65536
    assert sandbox.run(GOOD, "reverse", b"hello", BUDGETS).output == b"olleh"


def test_infinite_loop_runs_out_of_fuel(sandbox):
    result = sandbox.run(GOOD, "spin", b"", Budgets(fuel_limit=100_000, memory_mb=1, timeout_ms=10_000))
    assert result.status is TaskStatus.FUEL_EXHAUSTED and result.fuel_used == 100_000 and result.output == b""


def test_infinite_loop_with_huge_fuel_times_out(sandbox):
    begin = time.monotonic()
    result = sandbox.run(GOOD, "spin", b"", Budgets(fuel_limit=10**15, memory_mb=1, timeout_ms=150))
    elapsed = time.monotonic() - begin
    assert result.status is TaskStatus.TIMEOUT and 0.14 <= elapsed < 2.0
    assert result.fuel_used is None  # stated as unmeasured: wasmtime leaves the counter stale on interrupt
    assert sandbox.run(GOOD, "sum", b"\x05", BUDGETS).status is TaskStatus.SUCCESS  # the next run is not interrupted


def test_memory_hog_is_out_of_memory(sandbox):
    result = sandbox.run(GOOD, "hog", b"", Budgets(fuel_limit=10**9, memory_mb=4, timeout_ms=5_000))
    assert result.status is TaskStatus.OUT_OF_MEMORY and result.memory_peak <= 4 << 20


def test_initial_memory_above_the_budget_is_out_of_memory(sandbox):
    big = wasmtime.wat2wasm(GOOD_WAT.replace('(memory (export "memory") 1)', '(memory (export "memory") 128)'))
    assert sandbox.run(big, "sum", b"", Budgets(1_000_000, 2, 1_000)).status is TaskStatus.OUT_OF_MEMORY


def test_traps_are_errors(sandbox):
    result = sandbox.run(GOOD, "divzero", b"", BUDGETS)
    assert result.status is TaskStatus.ERROR and "divide by zero" in result.detail
    assert sandbox.run(GOOD, "badout", b"", BUDGETS).status is TaskStatus.ERROR  # output outside memory


def test_modules_outside_the_abi_are_refused(sandbox):
    with pytest.raises(ModuleRejected, match="imports env.clock"):
        sandbox.run(wasmtime.wat2wasm(IMPORTS_WAT), "sum", b"", BUDGETS)
    with pytest.raises(ModuleRejected, match="alloc"):
        sandbox.run(wasmtime.wat2wasm(NO_ALLOC_WAT), "sum", b"", BUDGETS)
    with pytest.raises(ModuleRejected, match="missing"):
        sandbox.run(GOOD, "missing", b"", BUDGETS)
    with pytest.raises(ModuleRejected, match="valid WebAssembly"):
        sandbox.run(b"\x00asm garbage", "sum", b"", BUDGETS)


# Execution and receipts ---------------------------------------------------------------------

async def test_execute_returns_a_receipt_that_verifies(sandbox):
    clock, store, requester = FakeClock(START), ArtifactStore(), await _identity()
    env = await _envelope(requester, store, data=bytes(range(100)))
    executor = await _executor(sandbox, store, clock)
    receipt = await executor.execute(env, requester.ed25519_public)
    assert receipt.status is TaskStatus.SUCCESS
    assert store.get_artifact(receipt.output_cid) == sum(range(100)).to_bytes(4, "little")
    assert receipt.task_envelope_hash == hashlib.sha256(env.to_json()).digest()
    assert receipt.module_hash == hashlib.sha256(GOOD).digest() and receipt.started_at == START
    await verify_receipt(receipt, env, executor.identity.ed25519_public, store, crypto=CRYPTO)
    assert TaskReceipt.from_json(receipt.to_json()) == receipt


async def test_failed_runs_still_get_signed_receipts(sandbox):
    clock, store, requester = FakeClock(START), ArtifactStore(), await _identity()
    executor = await _executor(sandbox, store, clock)
    quick = Budgets(fuel_limit=10**12, memory_mb=1, timeout_ms=100)
    for entrypoint, status, budgets in (
        ("spin", TaskStatus.FUEL_EXHAUSTED, BUDGETS),
        ("spin", TaskStatus.TIMEOUT, quick),
        ("divzero", TaskStatus.ERROR, BUDGETS),
        ("hog", TaskStatus.OUT_OF_MEMORY, BUDGETS),
    ):
        env = await _envelope(requester, store, entrypoint=entrypoint, task_id=status.value, budgets=budgets)
        receipt = await executor.execute(env, requester.ed25519_public)
        assert receipt.status is status and receipt.output_cid is None and receipt.output_hash is None
        await verify_receipt(receipt, env, executor.identity.ed25519_public, store, crypto=CRYPTO)
        assert TaskReceipt.from_json(receipt.to_json()) == receipt
    env = await _envelope(requester, store, module=wasmtime.wat2wasm(IMPORTS_WAT), task_id="imports")
    receipt = await executor.execute(env, requester.ed25519_public)
    assert receipt.status is TaskStatus.ERROR and "module rejected" in receipt.detail


@pytest.mark.parametrize("name", [*FAILS_BEFORE_ENTRY_WAT, *WRONG_TYPES_WAT])
async def test_modules_failing_before_their_entrypoint_get_signed_error_receipts(sandbox, name):
    clock, store, requester = FakeClock(START), ArtifactStore(), await _identity()
    executor = await _executor(sandbox, store, clock)
    module = wasmtime.wat2wasm(FAILS_BEFORE_ENTRY_WAT.get(name) or WRONG_TYPES_WAT[name])
    env = await _envelope(requester, store, module=module)
    receipt = await executor.execute(env, requester.ed25519_public)
    assert receipt.status is TaskStatus.ERROR and receipt.output_cid is None
    assert ("module rejected" in receipt.detail) == (name in WRONG_TYPES_WAT), receipt.detail
    await verify_receipt(receipt, env, executor.identity.ed25519_public, store, crypto=CRYPTO)


class _BrokenSandbox:
    """A sandbox with a bug in it (ours or the engine's): `fault` is what each run raises, or returns."""

    def __init__(self, fault):
        self.fault = fault

    def _answer(self):
        if isinstance(self.fault, BaseException):
            raise self.fault
        return self.fault


class _BrokenSyncSandbox(_BrokenSandbox):
    def run(self, module, entrypoint, data, budgets):
        return self._answer()


class _BrokenAsyncSandbox(_BrokenSandbox):  # the browser's shape: run_async only
    async def run_async(self, module, entrypoint, data, budgets):
        return self._answer()


def _result(**changes):
    return dataclasses.replace(SandboxResult(TaskStatus.ERROR, b"", 10, 65536, 5, "trap"), **changes)


@pytest.mark.parametrize("box, why", [
    (_BrokenSyncSandbox(KeyError("fuel")), "KeyError"),
    (_BrokenAsyncSandbox(TypeError("int() argument must be a string, a bytes-like object or a real number, not 'JsNull'")),
     "TypeError"),
    (_BrokenSyncSandbox(None), "NoneType"),
    (_BrokenAsyncSandbox(_result(status="Success", output=b"x")), "status"),
    (_BrokenSyncSandbox(_result(status=TaskStatus.SUCCESS, output="text")), "output"),
    (_BrokenSyncSandbox(_result(memory_peak=BUDGETS.memory_mb << 20 | 1)), "memory_peak"),
    (_BrokenSyncSandbox(_result(fuel_used=BUDGETS.fuel_limit + 1)), "fuel_used"),
    (_BrokenSyncSandbox(_result(fuel_used=True)), "fuel_used"),
    (_BrokenAsyncSandbox(_result(exec_us=-1)), "exec_us"),
    (_BrokenSyncSandbox(_result(detail=None)), "detail"),
], ids=lambda v: v if isinstance(v, str) else None)
async def test_a_sandbox_that_raises_or_breaks_its_contract_still_yields_a_signed_error_receipt(box, why):
    clock, store, requester = FakeClock(START), ArtifactStore(), await _identity()
    executor = await _executor(box, store, clock)
    env = await _envelope(requester, store)
    receipt = await executor.execute(env, requester.ed25519_public)
    assert receipt.status is TaskStatus.ERROR and receipt.output_cid is None and why in receipt.detail, receipt.detail
    await verify_receipt(receipt, env, executor.identity.ed25519_public, store, crypto=CRYPTO)
    assert TaskReceipt.from_json(receipt.to_json()) == receipt


async def test_a_long_detail_is_cut_to_what_a_receipt_carries():
    clock, store, requester = FakeClock(START), ArtifactStore(), await _identity()
    executor = await _executor(_BrokenSyncSandbox(_result(detail="x" * 1000)), store, clock)
    receipt = await executor.execute(await _envelope(requester, store), requester.ed25519_public)
    assert receipt.status is TaskStatus.ERROR and receipt.detail == "x" * 256
    assert TaskReceipt.from_json(receipt.to_json()) == receipt


async def test_executor_refuses_unsigned_or_expired_envelopes(sandbox):
    clock, store, requester = FakeClock(START), ArtifactStore(), await _identity()
    executor = await _executor(sandbox, store, clock)
    env = await _envelope(requester, store)
    with pytest.raises(BadSignature):
        await executor.execute(env, (await _identity()).ed25519_public)
    clock.advance(60_001)
    with pytest.raises(TaskDeadlinePassed):
        await executor.execute(env, requester.ed25519_public)


async def test_tampered_receipt_is_refused(sandbox):
    clock, store, requester = FakeClock(START), ArtifactStore(), await _identity()
    env = await _envelope(requester, store)
    executor = await _executor(sandbox, store, clock)
    receipt = await executor.execute(env, requester.ed25519_public)
    key = executor.identity.ed25519_public
    with pytest.raises(BadSignature):
        await verify_receipt(dataclasses.replace(receipt, fuel_used=1), env, key, crypto=CRYPTO)
    forged_output = store.store_artifact(b"\x00\x00\x00\x00")
    forged = dataclasses.replace(receipt, output_cid=forged_output, output_hash=hashlib.sha256(b"\x00" * 4).digest())
    with pytest.raises(BadSignature):
        await verify_receipt(forged, env, key, crypto=CRYPTO)
    resigned = await forged.sign(executor.identity)  # the executor itself lies: hashes still bind to the artifacts
    await verify_receipt(resigned, env, key, crypto=CRYPTO)
    lying = await dataclasses.replace(receipt, output_hash=hashlib.sha256(b"other").digest()).sign(executor.identity)
    with pytest.raises(ReceiptMismatch, match="output"):
        await verify_receipt(lying, env, key, store, crypto=CRYPTO)
    with pytest.raises(BadSignature):
        await verify_receipt(receipt, env, (await _identity()).ed25519_public, crypto=CRYPTO)
    obj = json.loads(receipt.to_json())
    obj["status"] = "Done"
    with pytest.raises(MalformedMessage):
        TaskReceipt.from_dict(obj)


async def test_receipt_for_another_envelope_is_refused(sandbox):
    clock, store, requester = FakeClock(START), ArtifactStore(), await _identity()
    env = await _envelope(requester, store)
    executor = await _executor(sandbox, store, clock)
    receipt = await executor.execute(env, requester.ed25519_public)
    key = executor.identity.ed25519_public
    other = await _envelope(requester, store, task_id="t2")
    with pytest.raises(ReceiptMismatch):
        await verify_receipt(receipt, other, key, crypto=CRYPTO)
    same_task_other_budget = await _envelope(requester, store, budgets=Budgets(2_000_000, 2, 2_000))
    with pytest.raises(ReceiptMismatch, match="another envelope"):
        await verify_receipt(receipt, same_task_other_budget, key, crypto=CRYPTO)


async def test_spot_check_reports_a_mismatch_against_the_executor(sandbox):
    clock, store, requester = FakeClock(START), ArtifactStore(), await _identity()
    env = await _envelope(requester, store, data=b"abc")
    honest = await _executor(sandbox, store, clock, "exec-a")
    checker = await _executor(sandbox, store, clock, "exec-b")
    receipt = await honest.execute(env, requester.ed25519_public)
    assert await spot_check(env, receipt, checker, requester_public_key=requester.ed25519_public, reporter_id="req", reporter=requester) is None
    cheat_cid = store.store_artifact(b"\xff\xff\xff\xff")
    cheat = await dataclasses.replace(
        receipt, output_cid=cheat_cid, output_hash=hashlib.sha256(b"\xff\xff\xff\xff").digest()
    ).sign(honest.identity)
    await verify_receipt(cheat, env, honest.identity.ed25519_public, store, crypto=CRYPTO)  # self-consistent lie
    report = await spot_check(env, cheat, checker, requester_public_key=requester.ed25519_public, reporter_id="req", reporter=requester)
    assert report is not None and report.executor == "exec-a" and report.checker == "exec-b"
    assert report.observed_output_hash == receipt.output_hash != report.claimed_output_hash
    await report.verify(CRYPTO, requester.ed25519_public, swarm_id=SWARM)
    assert type(report).from_json(report.to_json()) == report


# Claims ------------------------------------------------------------------------------------

async def test_claim_is_exclusive_until_the_lease_expires():
    clock = FakeClock(START)
    book = ClaimBook(SWARM, lease_ms=10_000)
    a, b = await _identity(), await _identity()
    h = hashlib.sha256(b"env").digest()
    first = await book.claim(a, "exec-a", "t1", h, clock.now_ms())
    await first.verify(CRYPTO, a.ed25519_public, swarm_id=SWARM)
    clock.advance(9_999)
    with pytest.raises(LeaseHeld) as held:
        await book.claim(b, "exec-b", "t1", h, clock.now_ms())
    assert held.value.holder == "exec-a" and held.value.expires_at == START + 10_000
    renewed = await book.claim(a, "exec-a", "t1", h, clock.now_ms())  # the holder may renew
    assert book.holder("t1", clock.now_ms()) == renewed
    clock.advance(10_000)
    assert book.holder("t1", clock.now_ms()) is None
    takeover = await book.claim(b, "exec-b", "t1", h, clock.now_ms())
    assert book.holder("t1", clock.now_ms()) == takeover
    assert Claim.from_json(takeover.to_json()) == takeover


async def test_claim_race_resolves_to_the_same_winner_everywhere():
    a, b = await _identity(), await _identity()
    h = hashlib.sha256(b"env").digest()
    book_a, book_b = ClaimBook(SWARM), ClaimBook(SWARM)
    claim_a = await book_a.claim(a, "exec-a", "t1", h, START)  # both claim at the same millisecond,
    claim_b = await book_b.claim(b, "exec-b", "t1", h, START)  # each winning locally at first
    assert book_b.holder("t1", START) == claim_b
    book_a.accept(Claim.from_json(claim_b.to_json()), START + 5)
    book_b.accept(Claim.from_json(claim_a.to_json()), START + 5)
    assert book_a.holder("t1", START + 5) == book_b.holder("t1", START + 5) == claim_a  # tie: smaller claimant
    with pytest.raises(LeaseHeld):
        await book_b.claim(b, "exec-b", "t1", h, START + 6)
    earlier = await dataclasses.replace(claim_b, claimed_at=START - 1).sign(b)
    for order in ([claim_a, earlier], [earlier, claim_a]):
        assert resolve_holder(order, START + 5) == earlier  # earliest timestamp wins whatever the arrival order
    with pytest.raises(StaleTimestamp):
        book_a.accept(await dataclasses.replace(claim_b, claimed_at=START - 120_000).sign(b), START)
    with pytest.raises(MalformedMessage):
        book_a.accept(await dataclasses.replace(claim_b, task_envelope_hash=b"\x01" * 32, claimed_at=START + 1).sign(b), START + 5)


# Coordinator -------------------------------------------------------------------------------

def _fake_envelope(task_id: str, priority: int, deadline: int = START + 60_000) -> TaskEnvelope:
    cid = ArtifactStore().store_artifact(b"m")
    return TaskEnvelope(SWARM, task_id, cid, "sum", cid, b"\x00" * 32, BUDGETS, "req", deadline, priority, b"\x00" * 64)


def test_coordinator_matches_capability_load_and_priority():
    coord = Coordinator()
    coord.update_member("busy", {"wasm"}, 0.9, 0, START)
    coord.update_member("idle", {"wasm"}, 0.1, 0, START)
    coord.update_member("nowasm", {"vectors"}, 0.0, 0, START)
    coord.submit(_fake_envelope("low", 1), START)
    coord.submit(_fake_envelope("high", 9), START)
    events = coord.poll(START)
    assert [(e.task_id, e.agent_id) for e in events] == [("high", "idle"), ("low", "idle")]
    coord.update_member("idle", {"wasm"}, 0.95, 2, START + 1)
    coord.submit(_fake_envelope("third", 1), START + 1)
    assert [e.agent_id for e in coord.poll(START + 1)] == ["busy"]
    with pytest.raises(TaskDeadlinePassed):
        coord.submit(_fake_envelope("late", 1, deadline=START), START + 1)


def test_coordinator_fails_tasks_past_their_deadline():
    coord = Coordinator()
    coord.submit(_fake_envelope("t", 1, deadline=START + 1_000), START)
    assert coord.poll(START) == []  # no member yet
    assert coord.poll(START + 1_000) == [Failed("t", "deadline")]


async def test_killed_executor_lease_expires_and_the_task_is_retried(sandbox):
    clock, store, requester = FakeClock(START), ArtifactStore(), await _identity()
    env = await _envelope(requester, store, data=b"\x07")
    coord = Coordinator(lease_grace_ms=1_000)
    book = ClaimBook(SWARM, lease_ms=BUDGETS.timeout_ms + 1_000)
    executors = {name: await _executor(sandbox, store, clock, name) for name in ("exec-a", "exec-b")}
    for name in executors:
        coord.update_member(name, {"wasm"}, 0.0 if name == "exec-a" else 0.5, 0, clock.now_ms())
    coord.submit(env, clock.now_ms())
    [first] = coord.poll(clock.now_ms())
    assert first == Assign("t1", "exec-a", 1, START + 3_000)
    await book.claim(executors["exec-a"].identity, "exec-a", "t1", env.envelope_hash(), clock.now_ms())
    # exec-a is killed here: no receipt, no heartbeat.
    clock.advance(2_000)
    assert coord.poll(clock.now_ms()) == []
    with pytest.raises(LeaseHeld):
        await book.claim(executors["exec-b"].identity, "exec-b", "t1", env.envelope_hash(), clock.now_ms())
    clock.advance(1_000)
    coord.update_member("exec-b", {"wasm"}, 0.5, 0, clock.now_ms())
    [retry] = coord.poll(clock.now_ms())
    assert retry.agent_id == "exec-b" and retry.attempt == 2
    await book.claim(executors["exec-b"].identity, "exec-b", "t1", env.envelope_hash(), clock.now_ms())
    receipt = await executors["exec-b"].execute(env, requester.ed25519_public)
    await verify_receipt(receipt, env, executors["exec-b"].identity.ed25519_public, store, crypto=CRYPTO)
    stranger = dataclasses.replace(receipt, executor="exec-c")
    assert coord.on_receipt(stranger, clock.now_ms()) == []  # never assigned: ignored
    assert coord.on_receipt(receipt, clock.now_ms()) == [Completed("t1", receipt)]
    assert coord.poll(clock.now_ms()) == []


def test_a_late_receipt_from_an_expired_assignee_settles_the_task():
    coord = Coordinator(lease_grace_ms=0)
    coord.update_member("a", {"wasm"}, 0.0, 0, START)
    coord.update_member("b", {"wasm"}, 0.1, 0, START)
    coord.submit(_fake_envelope("t", 1), START)
    assert [e.agent_id for e in coord.poll(START)] == ["a"]
    later = START + BUDGETS.timeout_ms
    assert [e.agent_id for e in coord.poll(later)] == ["b"]
    late = dataclasses.make_dataclass("R", ["task_id", "executor", "status"])("t", "a", TaskStatus.SUCCESS)
    assert coord.on_receipt(late, later) == [Completed("t", late)]
    assert coord.members["b"].assigned == 0 and coord.poll(later) == []


async def test_coordinator_retries_a_timeout_elsewhere_and_gives_up_after_max_attempts():
    coord = Coordinator(max_attempts=2)
    coord.update_member("a", {"wasm"}, 0.0, 0, START)
    coord.update_member("b", {"wasm"}, 0.1, 0, START)
    env = _fake_envelope("t", 1)
    coord.submit(env, START)
    assert [e.agent_id for e in coord.poll(START)] == ["a"]
    timeout = dataclasses.make_dataclass("R", ["task_id", "executor", "status"])
    assert coord.on_receipt(timeout("t", "a", TaskStatus.TIMEOUT), START) == []
    assert [e.agent_id for e in coord.poll(START)] == ["b"]
    coord.on_failure("t", "b")
    assert coord.poll(START) == [Failed("t", "attempts")]
