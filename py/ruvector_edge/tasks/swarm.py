"""Tasks over the swarm: the I/O shell that wires envelopes, claims, execution and receipts to messages.

The decisions live in the sans-I/O pieces (ClaimBook/resolve_holder, Coordinator,
TaskExecutor, verify_receipt); this module turns messages into their inputs and
their outputs into messages:

* BROADCAST_TASK {envelope, capability}: a signed envelope (the sender must be its
  requester). Capable members claim it at once when the swarm has no coordinator;
  with one, they wait for its TASK_ASSIGN.
* TASK_CLAIM {claim}: a signed lease, recorded by everyone; the holder is the same
  everywhere (resolve_holder). A claimant waits `settle_ms` for earlier claims in
  flight before running (unless no other live member has the capability), renews
  its lease while running, and a lease that runs out without a receipt is taken over.
* TASK_RESULT {receipt}: verified against the envelope and the executor's registry
  key by everyone; the requester also fetches the output by CID and checks every
  hash before the receipt counts as verified.
* Messages can be lost (a relay drops frames over its rate limit), so a requester
  re-broadcasts its unsettled envelopes every `reannounce_ms`: members that missed
  one learn of it, and an executor that already ran it sends its receipt again.
* SPOT_CHECK {task_id, req} / SPOT_RESULT {req, receipt}: the requester asks a second
  member to re-run a task and compares what it gets (MismatchReport on disagreement).
* SPOT_RESULT {mismatch, check}: on disagreement the requester broadcasts its signed
  report with the checker's signed receipt. Every member checks both signatures, that
  the sender is the task's requester and that the report names the executor's receipt
  it holds; a coordinator then assigns that executor nothing more (Coordinator.exclude).
  Each verified report (own or received) is logged, kept in `reported` and handed to
  every `mismatch_hooks` coroutine: the place an admin role (issue 15) routes it. Two
  receipts that disagree show that one of two members lied, not which: the requester
  believes its checker, so a requester colluding with a checker can frame one executor;
  the exclusion is local to coordinators and `Coordinator.reinstate` undoes it.

BROADCAST_TASK and TASK_RESULT bodies without `envelope` / `receipt` are plain
application messages and are left to subscribers.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from ..errors import (
    ArtifactUnavailable,
    LeaseHeld,
    MalformedMessage,
    OversizedMessage,
    ReceiptMismatch,
    RejectedInput,
    TaskDeadlinePassed,
    UnknownTask,
    UnsolicitedReply,
)
from ..p2p import wire
from ..protocol import MessageKind, SwarmMessage
from .claims import Claim, ClaimBook
from .coordinator import Assign, Coordinator, Failed
from .envelope import Budgets, TaskEnvelope
from .executor import TaskExecutor
from .receipt import MismatchReport, TaskReceipt, verify_receipt
from .sandbox import TaskStatus

__all__ = ["SwarmTasks", "DEFAULT_BUDGETS", "OUTPUT_SCHEMA_BYTES"]

log = logging.getLogger(__name__)

DEFAULT_BUDGETS = Budgets(fuel_limit=50_000_000, memory_mb=16, timeout_ms=5_000)
OUTPUT_SCHEMA_BYTES = hashlib.sha256(b"ruvector-edge/bytes@1").digest()  # outputs are opaque bytes
MAX_TASKS = 10_000
MAX_REPORTS = 256  # verified mismatch reports kept for the page and late hooks
_CAPABILITY_LEN = 64


@dataclass
class _Row:
    envelope: TaskEnvelope
    capability: str
    mine: bool
    submitted: float = field(default_factory=time.perf_counter)
    receipt: TaskReceipt | None = None
    verified: bool = False
    round_trip_ms: float | None = None
    failed: str | None = None
    claimant: str | None = None
    announced_at: int = 0
    waiters: list[asyncio.Future] = field(default_factory=list)


class SwarmTasks:
    """One agent's part in the task protocol. `agent` supplies identity, links, artifacts and fetching."""

    def __init__(self, agent: Any, *, sandbox: Any = None, lease_ms: int = 10_000, settle_ms: int = 150,
                 poll_ms: int = 200, coordinator: Coordinator | None = None, max_running: int = 1,
                 reannounce_ms: int = 2_000) -> None:
        self.agent = agent
        self.swarm = agent.swarm
        self.clock = agent.swarm.runtime.clock
        self.crypto = agent.swarm.runtime.crypto
        self.book = ClaimBook(self.swarm.swarm_id, lease_ms=lease_ms)
        self.settle_ms = settle_ms
        self.poll_ms = poll_ms
        self.reannounce_ms = reannounce_ms
        self.max_running = max_running  # leases held at once when uncoordinated (the sandbox runs one task at a time)
        self.coordinator = coordinator
        self.rows: dict[str, _Row] = {}
        self.mismatches: list[MismatchReport] = []  # our own spot-checks that disagreed
        self.reported: collections.deque[MismatchReport] = collections.deque(maxlen=MAX_REPORTS)  # all verified
        self.mismatch_hooks: list[Callable[[MismatchReport], Awaitable[None]]] = []
        self._sandbox = sandbox
        self._executor: TaskExecutor | None = None
        self._running: dict[str, asyncio.Task] = {}
        self._spot_waiters: dict[str, tuple[str, asyncio.Future]] = {}
        self._background: set[asyncio.Task] = set()
        self.executed = 0  # runs this member started (claimed tasks and spot-checks)

    # Who does what -------------------------------------------------------------------------
    @property
    def capabilities(self) -> tuple[str, ...]:
        return self.agent.config.effective_capabilities()

    def coordinated(self) -> bool:
        """A coordinator is in the swarm (us or a live peer): executors wait for its assignments."""
        return self.coordinator is not None or any(
            p.role == "coordinator" and p.joined and not p.left for p in self.agent.peers.values())

    @property
    def executor(self) -> TaskExecutor:
        if self._executor is None:
            if self._sandbox is None:
                from ..platform import default_sandbox

                self._sandbox = default_sandbox()
            self._executor = TaskExecutor(self.agent.agent_id, self.swarm.identity, self._sandbox, self.agent.artifacts,
                                          clock=self.clock, crypto=self.crypto)
        return self._executor

    def close(self) -> None:
        for task in [*self._running.values(), *self._background]:
            task.cancel()
        self._running.clear()
        self._background.clear()
        close = getattr(self._sandbox, "close", None)
        if close is not None:
            close()

    # Requester side ------------------------------------------------------------------------
    async def submit(self, module: bytes, data: bytes, *, entrypoint: str, budgets: Budgets | None, priority: int,
                     deadline_ms: int | None, capability: str) -> str:
        _check_capability(capability)
        artifacts = self.agent.artifacts
        now = self.clock.now_ms()
        envelope = await TaskEnvelope(
            swarm=self.swarm.swarm_id,
            task_id=f"task-{os.urandom(8).hex()}",
            module_cid=artifacts.store_artifact(module),
            entrypoint=entrypoint,
            input_cid=artifacts.store_artifact(data),
            output_schema_hash=OUTPUT_SCHEMA_BYTES,
            budgets=budgets or DEFAULT_BUDGETS,
            requester=self.agent.agent_id,
            deadline=now + (deadline_ms if deadline_ms is not None else 60_000),
            priority=priority,
        ).sign(self.swarm.identity)
        self._record(envelope, capability, mine=True)
        await self._announce(self.rows[envelope.task_id])
        self._consider(envelope.task_id)
        return envelope.task_id

    async def _announce(self, row: _Row) -> None:
        row.announced_at = self.clock.now_ms()
        await self.agent.broadcast(MessageKind.BROADCAST_TASK, envelope=row.envelope.to_dict(), capability=row.capability)

    async def wait_receipt(self, task_id: str, timeout: float) -> TaskReceipt:
        row = self._row(task_id)
        if row.receipt is None or not row.verified:
            future = asyncio.get_running_loop().create_future()
            row.waiters.append(future)
            try:
                await asyncio.wait_for(future, timeout)
            finally:
                if future in row.waiters:
                    row.waiters.remove(future)
        assert row.receipt is not None
        return row.receipt

    async def spot_check(self, task_id: str, checker: str, timeout: float) -> MismatchReport | None:
        """Ask `checker` to re-run a task whose receipt we verified; a signed report if the two runs disagree."""
        row = self._row(task_id)
        if row.receipt is None or not row.verified:
            raise UnknownTask(f"task {task_id!r} has no verified receipt to check")
        token = os.urandom(12).hex()
        future = asyncio.get_running_loop().create_future()
        self._spot_waiters[token] = (checker, future)
        try:
            await self.agent.send_to(checker, MessageKind.SPOT_CHECK, task_id=task_id, req=token)
            check: TaskReceipt = await asyncio.wait_for(future, timeout)
        finally:
            self._spot_waiters.pop(token, None)
        await self._verify(check, row.envelope, fetch_output=True, timeout=timeout)
        receipt = row.receipt
        if TaskStatus.TIMEOUT in (receipt.status, check.status):
            return None  # depends on the machine: only two completed runs are evidence
        if check.status == receipt.status and check.output_hash == receipt.output_hash:
            return None
        report = await MismatchReport(
            swarm=row.envelope.swarm, task_id=task_id, reporter=self.agent.agent_id, executor=receipt.executor,
            receipt_hash=receipt.record_hash(), claimed_status=receipt.status, claimed_output_hash=receipt.output_hash,
            checker=check.executor, check_receipt_hash=check.record_hash(), observed_status=check.status,
            observed_output_hash=check.output_hash,
        ).sign(self.swarm.identity)
        self.mismatches.append(report)
        await self._reported(report)
        await self.agent.broadcast(MessageKind.SPOT_RESULT, mismatch=report.to_dict(), check=check.to_dict())
        return report

    async def _reported(self, report: MismatchReport) -> None:
        log.warning("%s: task %s: executor %s's receipt failed a spot-check by %s (reported by %s)",
                    self.agent.agent_id, report.task_id, report.executor, report.checker, report.reporter)
        self.reported.append(report)
        if self.coordinator is not None:
            self.coordinator.exclude(report.executor, f"receipt for {report.task_id} failed a spot-check")
        for hook in self.mismatch_hooks:
            await hook(report)

    async def _on_mismatch(self, sender: str, body: dict[str, Any]) -> None:
        """A requester's report that its spot-check disagreed: believed only with both signed receipts."""
        wire.expect_keys(body, frozenset({"mismatch", "check"}), "SPOT_RESULT")
        report, check = MismatchReport.from_dict(body["mismatch"]), TaskReceipt.from_dict(body["check"])
        row = self._row(report.task_id)
        if sender != report.reporter or sender != row.envelope.requester:
            raise MalformedMessage("only a task's requester may report its spot-check")
        claimed = row.receipt
        if (claimed is None or claimed.executor != report.executor or claimed.record_hash() != report.receipt_hash
                or (claimed.status, claimed.output_hash) != (report.claimed_status, report.claimed_output_hash)):
            raise ReceiptMismatch("the report names a receipt this member does not hold")
        if (check.executor != report.checker or check.executor == claimed.executor
                or check.record_hash() != report.check_receipt_hash
                or (check.status, check.output_hash) != (report.observed_status, report.observed_output_hash)
                or (check.status, check.output_hash) == (claimed.status, claimed.output_hash)
                or TaskStatus.TIMEOUT in (check.status, claimed.status)):
            raise ReceiptMismatch("the report's two receipts do not disagree as it says")
        await report.verify(self.crypto, self.swarm.registry.public_key(sender), swarm_id=row.envelope.swarm)
        await verify_receipt(check, row.envelope, self.swarm.registry.public_key(check.executor), crypto=self.crypto)
        if any(known.task_id == report.task_id and known.checker == report.checker for known in self.reported):
            return
        await self._reported(report)

    # Executor side -------------------------------------------------------------------------
    async def claim(self, task_id: str) -> Claim:
        """Sign and broadcast a lease on `task_id`; LeaseHeld if another member's lease is live."""
        row = self._row(task_id)
        if row.receipt is not None or row.failed is not None:
            raise MalformedMessage(f"task {task_id!r} is already settled")
        now = self.clock.now_ms()
        if now >= row.envelope.deadline:
            raise TaskDeadlinePassed(f"task {task_id!r} expired at {row.envelope.deadline}")
        claim = await self.book.claim(self.swarm.identity, self.agent.agent_id, task_id, row.envelope.envelope_hash(), now)
        row.claimant = claim.claimant
        await self.agent.broadcast(MessageKind.TASK_CLAIM, claim=claim.to_dict())
        return claim

    def _capable(self, row: _Row) -> bool:
        return row.capability in self.capabilities

    def _rivals(self, row: _Row) -> bool:
        """Another live member could be claiming this task too (so a claim must wait to settle)."""
        return any(row.capability in info.capabilities and not info.left for info in self.agent.peers.values())

    def _claimable(self, task_id: str, now: int) -> bool:
        row = self.rows.get(task_id)
        return (row is not None and self._capable(row) and task_id not in self._running and row.receipt is None
                and row.failed is None and now < row.envelope.deadline and self.book.holder(task_id, now) is None)

    def _consider(self, task_id: str | None = None) -> None:
        """Uncoordinated: claim and run in the background while this member has a free run slot.

        `task_id` first (a new envelope), then the open tasks by priority and deadline; among
        equals each member's order is its own (hash of its id and the task id), so idle members
        mostly reach for different tasks instead of all racing for the same one.
        """
        if self.coordinated():
            return
        now = self.clock.now_ms()
        if task_id is not None and len(self._running) < self.max_running and self._claimable(task_id, now):
            self._start(task_id)
        if len(self._running) >= self.max_running:
            return
        me = self.agent.agent_id.encode()
        open_tasks = sorted(
            (t for t in self.rows if self._claimable(t, now)),
            key=lambda t: (-self.rows[t].envelope.priority, self.rows[t].envelope.deadline,
                           hashlib.sha256(me + t.encode()).digest()),
        )
        for open_task in open_tasks[: self.max_running - len(self._running)]:
            self._start(open_task)

    def _start(self, task_id: str, wait_for_lease: bool = False) -> None:
        task = asyncio.create_task(self._claim_and_run(task_id, wait_for_lease))
        self._running[task_id] = task

        def finished(_: asyncio.Task) -> None:
            self._running.pop(task_id, None)
            if not task.cancelled():
                self._consider()  # a slot is free: take the next open task

        task.add_done_callback(finished)

    async def _claim_and_run(self, task_id: str, wait_for_lease: bool = False) -> None:
        row = self.rows[task_id]
        try:
            try:
                await self.claim(task_id)
            except LeaseHeld as held:
                if not wait_for_lease:
                    return
                await asyncio.sleep(max(0, min(held.expires_at, row.envelope.deadline) - self.clock.now_ms()) / 1000)
                await self.claim(task_id)
            if self._rivals(row):
                await asyncio.sleep(self.settle_ms / 1000)  # earlier claims still in flight would win
            holder = self.book.holder(task_id, self.clock.now_ms())
            if holder is None or holder.claimant != self.agent.agent_id or row.receipt is not None:
                return
            renew = asyncio.create_task(self._renew(task_id))
            try:
                receipt = await self._execute(row)
            finally:
                renew.cancel()
            await self._settle(row, receipt, verified=True)
            await self.agent.broadcast(MessageKind.TASK_RESULT, receipt=receipt.to_dict())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # not run (lease lost, inputs not fetched): the lease expires, someone else takes over
            log.warning("%s: task %s not run: %s", self.agent.agent_id, task_id, exc)  # a run always ends in a receipt

    async def _renew(self, task_id: str) -> None:
        while True:
            await asyncio.sleep(self.book.lease_ms / 2000)
            try:
                await self.claim(task_id)
            except RejectedInput as exc:  # taken over or settled meanwhile: the run's receipt decides
                log.info("%s: lease on %s not renewed: %s", self.agent.agent_id, task_id, exc)
                return

    async def _execute(self, row: _Row) -> TaskReceipt:
        envelope = row.envelope
        timeout = max(0.1, (envelope.deadline - self.clock.now_ms()) / 1000)
        for cid in (envelope.module_cid, envelope.input_cid):
            await self.agent.fetch_artifact(cid, timeout=timeout, prefer=[envelope.requester])
        self.executed += 1
        return await self.executor.execute(envelope, self.swarm.registry.public_key(envelope.requester))

    # Coordinator role ----------------------------------------------------------------------
    async def tick(self) -> None:
        """Periodic: the coordinator assigns and retries; uncoordinated executors take over expired leases."""
        now = self.clock.now_ms()
        if self.coordinator is not None:
            for member in self.swarm.registry.members():
                info = self.agent.peers.get(member.agent_id)
                if member.agent_id == self.agent.agent_id or info is None or info.left:
                    continue
                self.coordinator.update_member(member.agent_id, set(member.registration.capabilities), member.load,
                                               member.queue_depth, member.last_seen)
            for event in self.coordinator.poll(now):
                if isinstance(event, Assign):
                    try:
                        await self.agent.send_to(event.agent_id, MessageKind.TASK_ASSIGN, task_id=event.task_id)
                    except Exception as exc:
                        log.warning("assignment of %s to %s not sent: %s", event.task_id, event.agent_id, exc)
                        self.coordinator.on_failure(event.task_id, event.agent_id)
                elif isinstance(event, Failed):
                    row = self.rows.get(event.task_id)
                    if row is not None and row.receipt is None:
                        row.failed = event.reason
        for row in list(self.rows.values()):
            if row.receipt is None and row.failed is None and now >= row.envelope.deadline:
                row.failed = "deadline"
            elif row.mine and row.receipt is None and row.failed is None and now - row.announced_at >= self.reannounce_ms:
                await self._announce(row)  # the relay drops frames over its rate: repeat until settled
        self._consider()

    def member_gone(self, agent_id: str) -> None:
        """A member left or vanished: as coordinator, put what it was running back in the queue now."""
        if self.coordinator is None:
            return
        for task_id in list(self.rows):
            if self.coordinator.assignment(task_id) == agent_id:
                self.coordinator.on_failure(task_id, agent_id)
        self.coordinator.members.pop(agent_id, None)

    async def run_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_ms / 1000)
            try:
                await self.tick()
            except Exception as exc:  # a failed tick is retried at the next one
                log.warning("%s: task tick failed: %s", self.agent.agent_id, exc)

    # Messages in ---------------------------------------------------------------------------
    async def on_broadcast_task(self, sender: str, message: SwarmMessage) -> bool:
        body = message.body
        if "envelope" not in body:
            return False
        wire.expect_keys(body, frozenset({"envelope", "capability"}), "BROADCAST_TASK")
        capability = _check_capability(body["capability"])
        envelope = TaskEnvelope.from_dict(body["envelope"])
        if envelope.requester != sender:
            raise MalformedMessage(f"task envelope from {sender!r} names requester {envelope.requester!r}")
        await envelope.verify(self.crypto, self.swarm.registry.public_key(sender), swarm_id=self.swarm.swarm_id)
        known = self.rows.get(envelope.task_id)
        if known is not None:
            if known.envelope.envelope_hash() != envelope.envelope_hash():
                raise MalformedMessage(f"task {envelope.task_id!r} was already submitted with another envelope")
            receipt = known.receipt
            if receipt is not None and receipt.executor == self.agent.agent_id:  # our TASK_RESULT was lost
                await self.agent.send_to(sender, MessageKind.TASK_RESULT, receipt=receipt.to_dict())
            return True
        if envelope.deadline <= self.clock.now_ms():
            raise TaskDeadlinePassed(f"task {envelope.task_id!r} arrived after its deadline")
        self._record(envelope, capability, mine=False)
        self._consider(envelope.task_id)
        return True

    async def on_claim(self, sender: str, message: SwarmMessage) -> None:
        wire.expect_keys(message.body, frozenset({"claim"}), "TASK_CLAIM")
        claim = Claim.from_dict(message.body["claim"])
        if claim.claimant != sender:
            raise MalformedMessage(f"claim from {sender!r} names claimant {claim.claimant!r}")
        row = self._row(claim.task_id)
        if claim.task_envelope_hash != row.envelope.envelope_hash():
            raise MalformedMessage(f"claim on {claim.task_id!r} names a different envelope")
        await claim.verify(self.crypto, self.swarm.registry.public_key(sender), swarm_id=self.swarm.swarm_id)
        holder = self.book.accept(claim, self.clock.now_ms())
        if holder is not None:
            row.claimant = holder.claimant

    async def on_assign(self, sender: str, message: SwarmMessage) -> None:
        wire.expect_keys(message.body, frozenset({"task_id"}), "TASK_ASSIGN")
        task_id = wire.get_id(message.body, "task_id")
        info = self.agent.peers.get(sender)
        if info is None or info.role != "coordinator":
            raise MalformedMessage(f"TASK_ASSIGN from {sender!r}, which is not a coordinator")
        row = self._row(task_id)
        if self._capable(row) and row.receipt is None and task_id not in self._running:
            self._start(task_id, wait_for_lease=True)

    async def on_result(self, sender: str, message: SwarmMessage) -> bool:
        body = message.body
        if "receipt" not in body:
            return False
        wire.expect_keys(body, frozenset({"receipt"}), "TASK_RESULT")
        receipt = TaskReceipt.from_dict(body["receipt"])
        if receipt.executor != sender:
            raise MalformedMessage(f"receipt from {sender!r} names executor {receipt.executor!r}")
        row = self._row(receipt.task_id)
        if row.receipt is not None and row.verified:
            return True
        # Signature and binding here, so a forgery is refused (and counted) before anything is fetched.
        await verify_receipt(receipt, row.envelope, self.swarm.registry.public_key(sender), crypto=self.crypto)
        if row.mine:  # fetching the output needs this handler to return (its blocks arrive as frames)
            self._spawn(self._accept_own(row, receipt))
        else:
            await self._settle(row, receipt, verified=True)
        return True

    async def _accept_own(self, row: _Row, receipt: TaskReceipt) -> None:
        """As requester: fetch the output and check every artifact hash before the receipt counts."""
        try:
            await self._verify(receipt, row.envelope, fetch_output=True,
                               timeout=max(1.0, (row.envelope.deadline - self.clock.now_ms()) / 1000))
        except (RejectedInput, ArtifactUnavailable) as exc:
            self.agent.rejected[type(exc).__name__] += 1
            log.warning("%s: receipt for %s refused: %s", self.agent.agent_id, receipt.task_id, exc)
            return
        if row.receipt is None or not row.verified:
            await self._settle(row, receipt, verified=True)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def on_spot_check(self, sender: str, message: SwarmMessage) -> None:
        wire.expect_keys(message.body, frozenset({"task_id", "req"}), "SPOT_CHECK")
        token = wire.get_str(message.body, "req", 32)
        row = self._row(wire.get_id(message.body, "task_id"))
        if sender != row.envelope.requester:
            raise MalformedMessage("only a task's requester may ask for a spot-check")
        self._spawn(self._answer_spot_check(sender, token, row))

    async def _answer_spot_check(self, requester: str, token: str, row: _Row) -> None:
        try:
            receipt = await self._execute(row)
            await self.agent.send_to(requester, MessageKind.SPOT_RESULT, req=token, receipt=receipt.to_dict())
        except Exception as exc:  # the requester's wait times out; nothing else depends on it
            log.warning("%s: spot-check of %s not answered: %s", self.agent.agent_id, row.envelope.task_id, exc)

    async def on_spot_result(self, sender: str, message: SwarmMessage) -> None:
        if "mismatch" in message.body:
            return await self._on_mismatch(sender, message.body)
        wire.expect_keys(message.body, frozenset({"req", "receipt"}), "SPOT_RESULT")
        waiting = self._spot_waiters.get(wire.get_str(message.body, "req", 32))
        if waiting is None or waiting[0] != sender or waiting[1].done():
            raise UnsolicitedReply(f"SPOT_RESULT from {sender!r} answers no outstanding spot-check")
        receipt = TaskReceipt.from_dict(message.body["receipt"])
        if receipt.executor != sender:
            raise MalformedMessage(f"spot-check receipt from {sender!r} names executor {receipt.executor!r}")
        waiting[1].set_result(receipt)

    # Bookkeeping ---------------------------------------------------------------------------
    async def _verify(self, receipt: TaskReceipt, envelope: TaskEnvelope, *, fetch_output: bool, timeout: float) -> None:
        """Signature and binding first (cheap, refuses forgeries before any fetch), then the artifacts' hashes."""
        key = self.swarm.registry.public_key(receipt.executor)
        await verify_receipt(receipt, envelope, key, crypto=self.crypto)
        if fetch_output:
            if receipt.output_cid is not None:
                await self.agent.fetch_artifact(receipt.output_cid, timeout=timeout, prefer=[receipt.executor])
            await verify_receipt(receipt, envelope, key, self.agent.artifacts, crypto=self.crypto)

    async def _settle(self, row: _Row, receipt: TaskReceipt, *, verified: bool) -> None:
        row.receipt, row.verified = receipt, verified
        if row.round_trip_ms is None:
            row.round_trip_ms = (time.perf_counter() - row.submitted) * 1000
        self.book.forget(receipt.task_id)
        if self.coordinator is not None:
            self.coordinator.on_receipt(receipt, self.clock.now_ms())
        for future in row.waiters:
            if not future.done():
                future.set_result(receipt)

    def _record(self, envelope: TaskEnvelope, capability: str, *, mine: bool) -> None:
        if len(self.rows) >= MAX_TASKS:
            settled = [t for t, r in self.rows.items() if r.receipt is not None or r.failed is not None]
            if not settled:
                raise OversizedMessage(f"already tracking {MAX_TASKS} unsettled tasks")
            del self.rows[settled[0]]
        self.rows[envelope.task_id] = _Row(envelope, capability, mine)
        if self.coordinator is not None:
            self.coordinator.submit(envelope, self.clock.now_ms(), capability=capability)

    def _row(self, task_id: str) -> _Row:
        row = self.rows.get(task_id)
        if row is None:
            raise UnknownTask(f"no envelope for task {task_id!r:.80}")
        return row

    def table(self) -> list[dict[str, Any]]:
        now = self.clock.now_ms()
        rows = []
        for task_id, row in self.rows.items():
            receipt = row.receipt
            holder = self.book.holder(task_id, now) if receipt is None else None
            if receipt is not None:
                state = "done" if receipt.status is TaskStatus.SUCCESS else "failed"
            elif row.failed is not None:
                state = "failed"
            else:
                state = "claimed" if holder is not None else "submitted"
            rows.append({
                "task_id": task_id,
                "requester": row.envelope.requester,
                "state": state,
                "claimant": holder.claimant if holder is not None else row.claimant,
                "executor": None if receipt is None else receipt.executor,
                "status": None if receipt is None else TaskStatus(receipt.status).value,
                "verified": row.verified,
                "output_cid": None if receipt is None else receipt.output_cid,
                "round_trip_ms": None if row.round_trip_ms is None or not row.mine else round(row.round_trip_ms, 2),
            })
        return rows


def _check_capability(value: object) -> str:
    if type(value) is not str or not 1 <= len(value) <= _CAPABILITY_LEN:
        raise MalformedMessage(f"capability must be a string of 1-{_CAPABILITY_LEN} characters")
    return value
