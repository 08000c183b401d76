"""Tasks over the swarm: native agents over a real relay submit, claim, execute and verify (issue 7).

Modules are the hand-encoded sample (tasks/samples.py) and WAT compiled here;
every agent runs its own wasmtime sandbox. Tasks with capability "manual" are
run by nobody automatically, so a test can drive claims and receipts by hand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os

import pytest
import wasmtime
from hypothesis import given, settings
from hypothesis import strategies as st

from test_tasks import ABI
from relay_fixtures import running_relay, wait_for, ws_url, TEST_SWARM_KEY, agent_config as config, joined_agents as joined
from ruvector_edge.agent import AgentRole, SwarmAgent
from ruvector_edge.errors import LeaseHeld
from ruvector_edge.protocol import MessageKind
from ruvector_edge.tasks import Budgets, NativeSandbox, TaskStatus
from ruvector_edge.tasks.samples import SAMPLE_ENTRYPOINT, sample_module

pytestmark = pytest.mark.timeout(90)

KEY = TEST_SWARM_KEY

# `count` loops as many times as the input's first u32 says (about 1 ns each) and returns the count.
MISBEHAVING = wasmtime.wat2wasm(f"""(module {ABI}
 (func (export "spin") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))
 (func (export "divzero") (param i32 i32) (result i64) (i64.div_u (i64.const 1) (i64.const 0)))
 (func (export "count") (param $p i32) (param $n i32) (result i64) (local $i i32) (local $k i32)
   (local.set $k (i32.load (local.get $p)))
   (block $done (loop $next
     (br_if $done (i32.ge_u (local.get $i) (local.get $k)))
     (local.set $i (i32.add (local.get $i) (i32.const 1)))
     (br $next)))
   (i32.store (local.get $p) (local.get $i))
   (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32)) (i64.const 4))))""")
SLOW_INPUT = (3_000_000_000).to_bytes(4, "little")  # a few seconds of work
BIG_BUDGETS = Budgets(fuel_limit=10**12, memory_mb=4, timeout_ms=60_000)


# --- the sample module ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox():
    with NativeSandbox() as box:
        yield box


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=3000))
def test_sample_module_upper_cases_ascii_in_the_native_sandbox(sandbox, data):
    result = sandbox.run(sample_module(), SAMPLE_ENTRYPOINT, data, Budgets(10_000_000, 2, 5_000))
    assert result.status is TaskStatus.SUCCESS and result.output == data.upper()


def test_sample_module_grows_memory_for_large_inputs(sandbox):
    data = b"abc" * 500_000  # 1.5 MB: 23 pages
    result = sandbox.run(sample_module(), SAMPLE_ENTRYPOINT, data, Budgets(100_000_000, 2, 5_000))
    assert result.status is TaskStatus.SUCCESS and result.output == data.upper() and result.memory_peak > 65536
    assert sandbox.run(sample_module(), SAMPLE_ENTRYPOINT, data, Budgets(100_000_000, 1, 5_000)).status is TaskStatus.OUT_OF_MEMORY


# --- hostile bodies straight into the handlers ----------------------------------------------

JSON_LEAF = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=40)
JSON = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=12)
FIELDS = ["envelope", "capability", "claim", "task_id", "receipt", "req", "cid", "data"]
BODIES = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), JSON, max_size=5)


@pytest.fixture(scope="module")
def lone_agent():
    return asyncio.run(SwarmAgent.new(config("lone")))


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from([MessageKind.BROADCAST_TASK, MessageKind.TASK_CLAIM, MessageKind.TASK_ASSIGN,
                             MessageKind.TASK_RESULT, MessageKind.SPOT_CHECK, MessageKind.SPOT_RESULT,
                             MessageKind.REQUEST_BLOCK, MessageKind.BLOCK]), body=BODIES)
def test_any_body_is_refused_with_a_typed_error_or_left_to_subscribers(lone_agent, kind, body):
    from ruvector_edge.errors import RejectedInput
    from ruvector_edge.protocol import SwarmMessage

    handler = lone_agent._handlers[kind]
    tasks = lone_agent.swarm_tasks
    try:
        handled = asyncio.run(handler("mallory", SwarmMessage(kind, body)))
    except RejectedInput:
        handled = None
    if handled is False:  # only a plain application message is passed on
        assert kind in (MessageKind.BROADCAST_TASK, MessageKind.TASK_RESULT)
        assert ("envelope" if kind is MessageKind.BROADCAST_TASK else "receipt") not in body
    assert tasks.rows == {} and tasks.book._claims == {} and lone_agent.exchange.outstanding() == 0
    assert tasks._running == {} and tasks._background == set() and tasks.executed == 0


# --- helpers --------------------------------------------------------------------------------


async def leave_all(agents) -> None:
    for agent in agents:
        await agent.leave()


def row(agent: SwarmAgent, task_id: str) -> dict:
    [found] = [r for r in agent.task_table() if r["task_id"] == task_id]
    return found


async def kill(agent: SwarmAgent) -> None:
    """Vanish without LEAVE, as a crashed process would: loops and runs stop, the socket closes."""
    for task in agent._tasks:
        task.cancel()
    agent.swarm_tasks.close()
    for link in agent.links.values():
        await link.stop()
    agent.links.clear()


@pytest.fixture
async def relay():
    async with running_relay() as server:
        yield server


# --- end to end -----------------------------------------------------------------------------


async def test_submit_runs_once_and_the_requester_verifies_the_receipt(relay):
    agents = await joined(ws_url(relay.port), config("req", AgentRole.SCOUT), config("w1"), config("w2"), config("w3"))
    requester, *workers = agents
    try:
        task_id = await requester.submit_task(sample_module(), b"hello, swarm", priority=3)
        receipt = await requester.wait_receipt(task_id, timeout=20)
        assert receipt.status is TaskStatus.SUCCESS and receipt.executor in {"w1", "w2", "w3"}
        assert requester.get_artifact(receipt.output_cid) == b"HELLO, SWARM"  # fetched from the executor
        assert receipt.output_hash == hashlib.sha256(b"HELLO, SWARM").digest()
        mine = row(requester, task_id)
        assert mine["state"] == "done" and mine["verified"] and mine["executor"] == receipt.executor
        assert mine["status"] == "Success" and mine["output_cid"] == receipt.output_cid and mine["round_trip_ms"] > 0
        assert sum(w.swarm_tasks.executed for w in workers) == 1  # three capable members raced; one ran it
        for worker in workers:
            await wait_for(lambda: row(worker, task_id)["state"] == "done", what=f"{worker.agent_id} to see the result")
            assert row(worker, task_id)["executor"] == receipt.executor
        assert sum(sum(a.rejected.values()) for a in agents) == 0
    finally:
        await leave_all(agents)


async def test_chunked_input_and_output_travel_by_cid(relay):
    agents = await joined(ws_url(relay.port), config("req", AgentRole.SCOUT), config("w1"))
    requester, worker = agents
    data = os.urandom(600 * 1024)  # a manifest and three distinct chunks each way
    try:
        task_id = await requester.submit_task(sample_module(), data)
        receipt = await requester.wait_receipt(task_id, timeout=30)
        assert receipt.status is TaskStatus.SUCCESS and requester.get_artifact(receipt.output_cid) == data.upper()
        assert len(requester.artifacts.get_chunk(receipt.output_cid)) < 1024  # the output came as a manifest + chunks
        assert requester.exchange.served == 5 and worker.exchange.served == 4  # module + 4 blocks; 4 blocks back
    finally:
        await leave_all(agents)


async def test_open_tasks_run_by_priority_and_unclaimed_ones_fail_at_their_deadline(relay):
    agents = await joined(ws_url(relay.port), config("req", AgentRole.SCOUT), config("w1", task_max_running=1))
    requester, worker = agents
    try:
        busy = await requester.submit_task(MISBEHAVING, (300_000_000).to_bytes(4, "little"), entrypoint="count",
                                           budgets=BIG_BUDGETS)
        await wait_for(lambda: worker.swarm_tasks.executed == 1, what="the worker to be busy")
        low = await requester.submit_task(sample_module(), b"low", priority=1)
        high = await requester.submit_task(sample_module(), b"high", priority=200)
        never = await requester.submit_task(sample_module(), b"nobody", capability="manual", deadline_ms=300)
        receipts = {t: await requester.wait_receipt(t, timeout=30) for t in (busy, low, high)}
        assert receipts[high].started_at <= receipts[low].started_at
        assert receipts[busy].started_at <= receipts[high].started_at
        await wait_for(lambda: row(requester, never)["state"] == "failed", what="the deadline to pass")
        assert row(requester, never)["status"] is None
    finally:
        await leave_all(agents)


async def test_a_lost_task_result_is_sent_again_when_the_requester_repeats_its_envelope(relay):
    agents = await joined(ws_url(relay.port), config("req", AgentRole.SCOUT, task_reannounce_ms=300, task_poll_ms=100),
                          config("w1"))
    requester, worker = agents
    real_broadcast, lost = worker.broadcast, []

    async def lossy_broadcast(kind, **body):  # the network loses the first TASK_RESULT
        if kind is MessageKind.TASK_RESULT and not lost:
            lost.append(body)
            return "lost"
        return await real_broadcast(kind, **body)

    worker.broadcast = lossy_broadcast
    try:
        task_id = await requester.submit_task(sample_module(), b"again")
        receipt = await requester.wait_receipt(task_id, timeout=20)
        assert lost and receipt.to_dict() == lost[0]["receipt"] and worker.swarm_tasks.executed == 1
    finally:
        await leave_all(agents)


async def test_claim_race_between_two_executors_one_lease_everywhere(relay):
    agents = await joined(ws_url(relay.port), config("req", AgentRole.SCOUT), config("w1"), config("w2"))
    requester, w1, w2 = agents
    try:
        task_id = await requester.submit_task(sample_module(), b"race", capability="manual")
        await wait_for(lambda: all(task_id in a.swarm_tasks.rows for a in agents), what="the envelope everywhere")
        results = await asyncio.gather(w1.claim_task(task_id), w2.claim_task(task_id), return_exceptions=True)
        claims = [r for r in results if not isinstance(r, BaseException)]
        assert claims and all(isinstance(r, LeaseHeld) for r in results if isinstance(r, BaseException))

        def holders():
            now = requester.swarm.runtime.clock.now_ms()
            return {a.agent_id: getattr(a.swarm_tasks.book.holder(task_id, now), "claimant", None) for a in agents}

        await wait_for(lambda: len(set(holders().values())) == 1 and None not in holders().values()
                       and all(len(a.swarm_tasks.book.claims(task_id)) == len(claims) for a in agents),
                       what="every member to name the same holder")
        holder = holders()["req"]
        loser = w2 if holder == "w1" else w1
        with pytest.raises(LeaseHeld):
            await loser.claim_task(task_id)
        assert row(requester, task_id)["state"] == "claimed" and row(requester, task_id)["claimant"] == holder
    finally:
        await leave_all(agents)


async def test_executor_killed_mid_task_lease_expires_and_another_finishes(relay):
    fast = dict(task_lease_ms=1200, task_poll_ms=100)
    agents = await joined(ws_url(relay.port), config("req", AgentRole.SCOUT), config("w1", **fast), config("w2", **fast))
    requester, w1, w2 = agents
    try:
        task_id = await requester.submit_task(MISBEHAVING, SLOW_INPUT, entrypoint="count", budgets=BIG_BUDGETS)
        await wait_for(lambda: w1.swarm_tasks.executed + w2.swarm_tasks.executed == 1, timeout=10, what="a run to start")
        first = w1 if w1.swarm_tasks.executed else w2
        other = w2 if first is w1 else w1
        (started,) = [c.claimed_at for c in first.swarm_tasks.book.claims(task_id) if c.claimant == first.agent_id]
        await wait_for(lambda: any(c.claimant == first.agent_id and c.claimed_at > started
                                   for c in requester.swarm_tasks.book.claims(task_id)),
                       timeout=10, what="the running executor to renew its lease")
        assert row(requester, task_id)["claimant"] == first.agent_id and row(requester, task_id)["state"] == "claimed"
        await kill(first)
        receipt = await requester.wait_receipt(task_id, timeout=40)
        assert receipt.executor == other.agent_id and receipt.status is TaskStatus.SUCCESS
        assert requester.get_artifact(receipt.output_cid) == SLOW_INPUT
        assert row(requester, task_id)["state"] == "done" and other.swarm_tasks.executed == 1
    finally:
        await leave_all([a for a in agents if a.links])


async def test_trap_is_an_error_receipt_and_loops_run_out_of_fuel_or_time(relay):
    agents = await joined(ws_url(relay.port), config("req", AgentRole.SCOUT), config("w1"))
    requester, worker = agents
    try:
        trap = await requester.submit_task(MISBEHAVING, b"", entrypoint="divzero")
        fuel = await requester.submit_task(MISBEHAVING, b"", entrypoint="spin", budgets=Budgets(100_000, 2, 10_000))
        clock = await requester.submit_task(MISBEHAVING, b"", entrypoint="spin", budgets=Budgets(10**12, 2, 300))
        expected = {trap: TaskStatus.ERROR, fuel: TaskStatus.FUEL_EXHAUSTED, clock: TaskStatus.TIMEOUT}
        for task_id, status in expected.items():
            receipt = await requester.wait_receipt(task_id, timeout=20)
            assert receipt.status is status and receipt.output_cid is None, receipt.detail
            assert row(requester, task_id)["state"] == "failed" and row(requester, task_id)["verified"]
        assert (await requester.wait_receipt(fuel)).fuel_used == 100_000
        assert (await requester.wait_receipt(clock)).fuel_used is None  # unmeasured on a timeout, not faked
    finally:
        await leave_all(agents)


class BrokenSandbox:
    """A sandbox with a bug in it (ours or the engine's): every run raises."""

    def __init__(self) -> None:
        self.runs = 0

    def run(self, module, entrypoint, data, budgets):
        self.runs += 1
        raise RuntimeError("a bug in the sandbox")


async def test_a_sandbox_that_raises_settles_the_task_with_an_error_receipt(relay):
    fast = dict(task_lease_ms=1200, task_poll_ms=100)  # were the task dropped, the lease would soon be taken again
    agents = await joined(ws_url(relay.port), config("req", AgentRole.SCOUT), config("w1", **fast))
    requester, worker = agents
    broken = worker.swarm_tasks._sandbox = BrokenSandbox()
    try:
        task_id = await requester.submit_task(sample_module(), b"anything")
        receipt = await requester.wait_receipt(task_id, timeout=20)
        assert receipt.status is TaskStatus.ERROR and receipt.executor == "w1" and receipt.output_cid is None
        assert "RuntimeError: a bug in the sandbox" in receipt.detail
        assert row(requester, task_id)["state"] == "failed" and row(requester, task_id)["verified"]
        await wait_for(lambda: row(worker, task_id)["state"] == "failed", what="the worker to settle it")
        assert broken.runs == 1 and worker.swarm_tasks.executed == 1
    finally:
        await leave_all(agents)


async def test_tampered_receipt_and_receipt_for_another_envelope_are_refused(relay):
    agents = await joined(ws_url(relay.port), config("req", AgentRole.SCOUT), config("w1"))
    requester, worker = agents
    try:
        first = await requester.submit_task(sample_module(), b"first", capability="manual")
        second = await requester.submit_task(sample_module(), b"second", capability="manual")
        await wait_for(lambda: {first, second} <= set(worker.swarm_tasks.rows), what="the envelopes at the worker")
        rows = worker.swarm_tasks.rows
        genuine = await worker.swarm_tasks._execute(rows[second])  # a real run, its receipt signed by w1
        other = await worker.swarm_tasks._execute(rows[first])

        tampered = dataclasses.replace(genuine, output_hash=hashlib.sha256(b"SOMETHING ELSE").digest())
        await worker.broadcast(MessageKind.TASK_RESULT, receipt=tampered.to_dict())
        await wait_for(lambda: requester.rejected["BadSignature"] == 1, what="the tampered receipt refused")

        moved = await dataclasses.replace(other, task_id=second, input_cid=genuine.input_cid,
                                          input_hash=genuine.input_hash).sign(worker.swarm.identity)
        await worker.broadcast(MessageKind.TASK_RESULT, receipt=moved.to_dict())
        await wait_for(lambda: requester.rejected["ReceiptMismatch"] == 1, what="the moved receipt refused")
        assert row(requester, second)["state"] == "submitted" and not row(requester, second)["verified"]

        await worker.broadcast(MessageKind.TASK_RESULT, receipt=genuine.to_dict())
        receipt = await requester.wait_receipt(second, timeout=10)
        assert receipt == genuine and requester.get_artifact(receipt.output_cid) == b"SECOND"
        assert row(requester, first)["state"] == "submitted"
    finally:
        await leave_all(agents)


async def test_coordinator_assigns_to_a_capable_member(relay):
    agents = await joined(ws_url(relay.port), config("coord", AgentRole.COORDINATOR), config("req", AgentRole.SCOUT),
                          config("w1"), config("gpu", capabilities=("gpu",)))
    coordinator, requester, worker, gpu = agents
    try:
        task_id = await requester.submit_task(sample_module(), b"assigned", priority=9)
        receipt = await requester.wait_receipt(task_id, timeout=20)
        assert receipt.executor == "w1" and worker.swarm_tasks.executed == 1
        await wait_for(lambda: row(coordinator, task_id)["state"] == "done", what="the coordinator to settle it")
        assert coordinator.swarm_tasks.coordinator.assignment(task_id) is None
        assert gpu.swarm_tasks.rows[task_id].receipt is not None and gpu.swarm_tasks.executed == 0
    finally:
        await leave_all(agents)


async def test_coordinator_reassigns_when_the_assigned_executor_vanishes(relay):
    fast = dict(task_lease_ms=1200, task_poll_ms=100)
    agents = await joined(ws_url(relay.port), config("coord", AgentRole.COORDINATOR, **fast),
                          config("req", AgentRole.SCOUT), config("w1", **fast), config("w2", **fast))
    coordinator, requester, w1, w2 = agents
    try:
        task_id = await requester.submit_task(MISBEHAVING, SLOW_INPUT, entrypoint="count", budgets=BIG_BUDGETS)
        await wait_for(lambda: w1.swarm_tasks.executed + w2.swarm_tasks.executed == 1, timeout=10, what="a run to start")
        first, other = (w1, w2) if w1.swarm_tasks.executed else (w2, w1)
        assert coordinator.swarm_tasks.coordinator.assignment(task_id) == first.agent_id
        await kill(first)
        receipt = await requester.wait_receipt(task_id, timeout=40)
        assert receipt.executor == other.agent_id and receipt.status is TaskStatus.SUCCESS
        await wait_for(lambda: row(coordinator, task_id)["state"] == "done", what="the coordinator to settle it")
    finally:
        await leave_all([a for a in agents if a.links])


class LyingSandbox(NativeSandbox):
    """A dishonest executor's sandbox: runs the module, then reports a different output."""

    def run(self, module, entrypoint, data, budgets):
        result = super().run(module, entrypoint, data, budgets)
        return dataclasses.replace(result, output=result.output[::-1])


async def test_spot_check_agrees_with_an_honest_executor_and_reports_a_lying_one(relay):
    agents = await joined(ws_url(relay.port), config("req", AgentRole.SCOUT), config("liar"), config("w2"))
    requester, liar, honest = agents
    liar.swarm_tasks._sandbox = LyingSandbox()
    try:
        task_id = await requester.submit_task(sample_module(), b"check me", capability="manual")
        await wait_for(lambda: task_id in liar.swarm_tasks.rows, what="the envelope at the liar")
        await liar.claim_task(task_id)
        receipt = await liar.swarm_tasks._execute(liar.swarm_tasks.rows[task_id])
        await liar.broadcast(MessageKind.TASK_RESULT, receipt=receipt.to_dict())
        assert (await requester.wait_receipt(task_id, timeout=10)).executor == "liar"  # well-formed, just wrong

        report = await requester.spot_check(task_id, "w2", timeout=20)
        assert report is not None and report.executor == "liar" and report.checker == "w2"
        assert report.observed_output_hash == hashlib.sha256(b"CHECK ME").digest()
        assert report.claimed_output_hash == hashlib.sha256(b"EM KCEHC").digest()
        await report.verify(requester.swarm.runtime.crypto, requester.swarm.identity.ed25519_public,
                            swarm_id=requester.swarm.swarm_id)
        assert requester.swarm_tasks.mismatches == [report]

        liar.swarm_tasks.close()  # the liar mends its ways: two honest executors must agree
        liar.swarm_tasks._sandbox, liar.swarm_tasks._executor = NativeSandbox(), None
        honest_task = await requester.submit_task(sample_module(), b"honest")
        honest_receipt = await requester.wait_receipt(honest_task, timeout=20)
        checker = "liar" if honest_receipt.executor == "w2" else "w2"
        assert await requester.spot_check(honest_task, checker, timeout=20) is None
        assert requester.swarm_tasks.mismatches == [report]
    finally:
        await leave_all(agents)


async def test_an_executor_failing_a_spot_check_gets_no_more_assignments_and_is_reported(relay):
    agents = await joined(ws_url(relay.port), config("coord", AgentRole.COORDINATOR), config("req", AgentRole.SCOUT),
                          config("liar"), config("w2"), config("m", AgentRole.SCOUT))
    coordinator, requester, liar, honest, mallory = agents
    liar.swarm_tasks._sandbox = LyingSandbox()
    routed = []

    async def admin_hook(report):
        routed.append(report)

    coordinator.swarm_tasks.mismatch_hooks.append(admin_hook)
    try:
        task_id = await requester.submit_task(sample_module(), b"check me", capability="manual")
        await wait_for(lambda: all(task_id in a.swarm_tasks.rows for a in agents), what="the envelope everywhere")
        await liar.claim_task(task_id)
        receipt = await liar.swarm_tasks._execute(liar.swarm_tasks.rows[task_id])
        await liar.broadcast(MessageKind.TASK_RESULT, receipt=receipt.to_dict())
        await requester.wait_receipt(task_id, timeout=10)
        await wait_for(lambda: coordinator.swarm_tasks.rows[task_id].receipt is not None,
                       what="the liar's receipt at the coordinator")

        forged = dataclasses.replace(await requester.spot_check(task_id, "w2", timeout=20), executor="w2")
        await wait_for(lambda: [r.executor for r in coordinator.swarm_tasks.reported] == ["liar"],
                       what="the coordinator to verify the report")
        assert "liar" in coordinator.swarm_tasks.coordinator.excluded and [r.executor for r in routed] == ["liar"]
        refused = coordinator.rejected["MalformedMessage"]  # a member that is not the requester cannot report
        await mallory.broadcast(MessageKind.SPOT_RESULT, mismatch=forged.to_dict(), check=receipt.to_dict())
        await wait_for(lambda: coordinator.rejected["MalformedMessage"] == refused + 1, what="mallory's report refused")
        assert "w2" not in coordinator.swarm_tasks.coordinator.excluded and len(routed) == 1

        ran = liar.swarm_tasks.executed
        for i in range(3):  # the liar would be first in line (same load, smaller name): it gets nothing
            receipt = await requester.wait_receipt(await requester.submit_task(sample_module(), b"next %d" % i), timeout=20)
            assert receipt.executor == "w2"
        assert liar.swarm_tasks.executed == ran
    finally:
        await leave_all(agents)


async def test_hostile_task_messages_are_refused_and_change_nothing(relay):
    agents = await joined(ws_url(relay.port), config("req", AgentRole.SCOUT), config("w1"), config("m", AgentRole.SCOUT))
    requester, worker, mallory = agents
    try:
        task_id = await requester.submit_task(sample_module(), b"x", capability="manual")
        await wait_for(lambda: task_id in mallory.swarm_tasks.rows and task_id in worker.swarm_tasks.rows,
                       what="the envelope everywhere")
        envelope = requester.swarm_tasks.rows[task_id].envelope
        claim = await mallory.claim_task(task_id)
        await wait_for(lambda: row(worker, task_id)["claimant"] == "m", what="mallory's claim")
        before = {a.agent_id: a.task_table() for a in agents}
        forged_claim = dataclasses.replace(claim, claimed_at=claim.claimed_at + 1).to_dict()
        hostile = [
            (MessageKind.BROADCAST_TASK, {"envelope": envelope.to_dict(), "capability": "wasm"}, "MalformedMessage"),
            (MessageKind.BROADCAST_TASK, {"envelope": {"type": "task_envelope"}, "capability": "wasm"}, "MalformedMessage"),
            (MessageKind.BROADCAST_TASK, {"envelope": envelope.to_dict(), "capability": "x" * 65}, "MalformedMessage"),
            (MessageKind.TASK_CLAIM, {"claim": forged_claim}, "BadSignature"),
            (MessageKind.TASK_CLAIM, {"claim": {**claim.to_dict(), "task_id": "task-unknown"}}, "UnknownTask"),
            (MessageKind.TASK_CLAIM, {"claim": claim.to_dict(), "extra": 1}, "MalformedMessage"),
            (MessageKind.TASK_ASSIGN, {"task_id": task_id}, "MalformedMessage"),  # mallory is no coordinator
            (MessageKind.TASK_RESULT, {"receipt": {"type": "task_receipt"}}, "MalformedMessage"),
            (MessageKind.SPOT_CHECK, {"task_id": task_id, "req": "r1"}, "MalformedMessage"),  # not the requester
            (MessageKind.SPOT_RESULT, {"req": "r1", "receipt": {}}, "UnsolicitedReply"),
        ]
        for kind, body, error in hostile:
            count = worker.rejected[error]
            await mallory.send_to("w1", kind, **body)
            await wait_for(lambda: worker.rejected[error] == count + 1, what=f"{kind.value} refused with {error}")
        await worker.links["relay"].ping()
        assert {a.agent_id: a.task_table() for a in agents} == before
        assert worker.swarm_tasks.executed == 0
    finally:
        await leave_all(agents)


async def test_edge_agent_processes_run_the_sample_task(relay):
    """Two edge-agent processes: a worker executes, a scout submits with --submit and prints the verified receipt."""
    import subprocess

    from relay_fixtures import child_env, script

    invite = f"{ws_url(relay.port)}#swarm_key={KEY.hex()}"
    common = ["--coordinator", invite, "--duration", "12", "--status-every", "60"]
    worker = subprocess.Popen([script("edge-agent"), "--id", "cli-worker", *common],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(EDGE_LOG="warning"))
    scout = subprocess.Popen([script("edge-agent"), "--id", "cli-scout", "--role", "scout", "--submit", "hello from the cli",
                              *common], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=child_env(EDGE_LOG="warning"))
    try:
        line = await asyncio.wait_for(asyncio.to_thread(_line_with, scout.stdout, "task "), 30)
        assert "Success by cli-worker, receipt verified" in line and "'HELLO FROM THE CLI'" in line, line
    finally:
        for proc in (scout, worker):
            proc.kill()
            proc.communicate(timeout=10)


def _line_with(stream, needle: str, limit: int = 50) -> str:
    for _ in range(limit):
        line = stream.readline()
        if not line or needle in line:
            return line
    return ""
