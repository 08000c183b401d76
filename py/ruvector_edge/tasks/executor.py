"""Running a task envelope end to end on this member: fetch by CID, run in the sandbox, store, sign a receipt."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

from ..errors import ModuleRejected, TaskDeadlinePassed
from ..platform.base import Clock, CryptoProvider
from ..p2p.wire import MAX_SAFE_INT
from .envelope import Budgets, TaskEnvelope
from .receipt import _DETAIL_LEN, MismatchReport, TaskReceipt, verify_receipt
from .sandbox import SandboxResult, TaskStatus

__all__ = ["TaskExecutor", "spot_check"]

log = logging.getLogger(__name__)


class TaskExecutor:
    """One member's executor: its identity signs receipts, its ArtifactStore serves inputs and keeps outputs.

    `sandbox` is anything with `run(module, entrypoint, input, budgets) -> SandboxResult`
    (NativeSandbox here, the worker sandbox in the browser). The run happens on a
    worker thread so a long task does not stall the member's event loop.
    """

    def __init__(
        self, agent_id: str, identity: Any, sandbox: Any, artifacts: Any, *, clock: Clock, crypto: CryptoProvider, offload: bool = True
    ) -> None:
        self.agent_id = agent_id
        self.identity = identity
        self.sandbox = sandbox
        self.artifacts = artifacts
        self.clock = clock
        self.crypto = crypto
        self.offload = offload

    async def execute(self, envelope: TaskEnvelope, requester_public_key: bytes) -> TaskReceipt:
        """Verify the envelope (requester's registry key), run it, return the signed receipt.

        Module and input are fetched through `get_artifact`, which checks every
        block against its CID (MissingChunks names what to fetch from peers). A
        module outside the task ABI yields an Error receipt, so the task is settled
        rather than retried forever; so does a sandbox that raises or returns
        something a receipt cannot honestly carry (a bug, ours or the engine's):
        once the envelope is accepted, the run always ends in a signed receipt.
        """
        await envelope.verify(self.crypto, requester_public_key)
        started_at = self.clock.now_ms()
        if started_at > envelope.deadline:
            raise TaskDeadlinePassed(f"task {envelope.task_id!r} expired at {envelope.deadline}")
        begin = time.perf_counter_ns()
        module = self.artifacts.get_artifact(envelope.module_cid)
        data = self.artifacts.get_artifact(envelope.input_cid)
        result = await self._run(module, envelope, data)
        output_cid = output_hash = None
        if result.status is TaskStatus.SUCCESS:
            output_cid = self.artifacts.store_artifact(result.output)
            output_hash = hashlib.sha256(result.output).digest()
        unsigned = TaskReceipt(
            swarm=envelope.swarm,
            task_id=envelope.task_id,
            executor=self.agent_id,
            task_envelope_hash=envelope.envelope_hash(),
            module_cid=envelope.module_cid,
            module_hash=hashlib.sha256(module).digest(),
            entrypoint=envelope.entrypoint,
            input_cid=envelope.input_cid,
            input_hash=hashlib.sha256(data).digest(),
            output_cid=output_cid,
            output_hash=output_hash,
            status=result.status,
            fuel_used=result.fuel_used,
            memory_peak=result.memory_peak,
            started_at=started_at,
            exec_us=result.exec_us,
            total_us=(time.perf_counter_ns() - begin) // 1000,
            detail=result.detail[:_DETAIL_LEN],
        )
        return await unsigned.sign(self.identity)

    async def _run(self, module: bytes, envelope: TaskEnvelope, data: bytes) -> SandboxResult:
        args = (module, envelope.entrypoint, data, envelope.budgets)
        try:
            run_async = getattr(self.sandbox, "run_async", None)
            if run_async is not None:  # the browser sandbox: it waits on a worker, it has no blocking run
                result = await run_async(*args)
            elif self.offload:
                result = await asyncio.to_thread(self.sandbox.run, *args)
            else:
                result = self.sandbox.run(*args)
        except ModuleRejected as exc:
            return SandboxResult(TaskStatus.ERROR, b"", 0, 0, 0, f"module rejected: {exc}"[:_DETAIL_LEN])
        except Exception as exc:  # a raise would leave the task unsettled, retried by every member in turn
            log.exception("%s: the sandbox failed on task %s", self.agent_id, envelope.task_id)
            return _sandbox_failure(f"sandbox failed: {type(exc).__name__}: {exc}")
        breach = _contract_breach(result, envelope.budgets)
        if breach is not None:
            log.error("%s: the sandbox broke its contract on task %s: %s", self.agent_id, envelope.task_id, breach)
            return _sandbox_failure(f"sandbox broke its contract: {breach}")
        return result


def _sandbox_failure(detail: str) -> SandboxResult:
    """An Error result for a run the sandbox could not account for: fuel unmeasured (None), not guessed."""
    return SandboxResult(TaskStatus.ERROR, b"", None, 0, 0, detail[:_DETAIL_LEN])


def _within(value: object, high: int) -> bool:
    return type(value) is int and 0 <= value <= high


def _contract_breach(result: object, budgets: Budgets) -> str | None:
    """Why `result` is not a SandboxResult a receipt can carry and verify_receipt accept, or None.

    Checked here, not trusted: a receipt that names an unknown status or reports
    more than the budgets would be signed, then refused by every verifier, and
    the task would never settle.
    """
    if not isinstance(result, SandboxResult):
        return f"it returned {type(result).__name__}, not a SandboxResult"
    if not isinstance(result.status, TaskStatus):
        return f"status {result.status!r:.40} is not a TaskStatus"
    if result.status is TaskStatus.SUCCESS and not isinstance(result.output, bytes):
        return f"output is {type(result.output).__name__}, not bytes"
    if result.fuel_used is not None and not _within(result.fuel_used, budgets.fuel_limit):
        return f"fuel_used {result.fuel_used!r:.40} is not an integer within the limit of {budgets.fuel_limit}"
    if not _within(result.memory_peak, budgets.memory_mb << 20):
        return f"memory_peak {result.memory_peak!r:.40} is not an integer within the budget of {budgets.memory_mb} MiB"
    if not _within(result.exec_us, MAX_SAFE_INT):
        return f"exec_us {result.exec_us!r:.40} is not a non-negative integer"
    if not isinstance(result.detail, str):
        return f"detail is {type(result.detail).__name__}, not str"
    return None


async def spot_check(
    envelope: TaskEnvelope,
    receipt: TaskReceipt,
    checker: TaskExecutor,
    *,
    requester_public_key: bytes,
    reporter_id: str,
    reporter: Any,
) -> MismatchReport | None:
    """Re-run `envelope` on a second executor; None if status and output hash agree, else a signed report.

    The caller has verified `receipt` already. Timeout depends on the machine, so
    only a disagreement between two completed runs is evidence against the executor.
    """
    check = await checker.execute(envelope, requester_public_key)
    await verify_receipt(check, envelope, checker.identity.ed25519_public, checker.artifacts, crypto=checker.crypto)
    if TaskStatus.TIMEOUT in (receipt.status, check.status):
        return None
    if check.status == receipt.status and check.output_hash == receipt.output_hash:
        return None
    unsigned = MismatchReport(
        swarm=envelope.swarm,
        task_id=envelope.task_id,
        reporter=reporter_id,
        executor=receipt.executor,
        receipt_hash=receipt.record_hash(),
        claimed_status=receipt.status,
        claimed_output_hash=receipt.output_hash,
        checker=check.executor,
        check_receipt_hash=check.record_hash(),
        observed_status=check.status,
        observed_output_hash=check.output_hash,
    )
    return await unsigned.sign(reporter)
