"""Signed task receipts, their verification, and the mismatch report a spot-check produces.

A receipt binds everything a requester needs to trust (or dispute) a result:
the envelope by hash (signature included, so a receipt can't be moved to a
re-signed envelope), module/input/output by CID *and* SHA-256 of their bytes,
what the run consumed, and its status. The executor signs every field but `sig`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import MalformedMessage, ReceiptMismatch, WrongSwarm
from ..artifacts.cid import parse_cid
from ..p2p import wire
from ..platform.base import CryptoProvider
from .envelope import MAX_FUEL, TaskEnvelope, TaskRecord, check_entrypoint
from .sandbox import TaskStatus

__all__ = ["MismatchReport", "TaskReceipt", "verify_receipt"]

_DETAIL_LEN = 256


def _opt_hex(obj: dict[str, Any], key: str, nbytes: int) -> bytes | None:
    return None if obj.get(key) is None else wire.get_hex(obj, key, nbytes)


def _opt_int(obj: dict[str, Any], key: str, maximum: int) -> int | None:
    return None if obj.get(key) is None else wire.get_int(obj, key, 0, maximum)


def _cid(obj: dict[str, Any], key: str) -> str:
    parse_cid(obj.get(key))
    return obj[key]


def _status(value: object) -> TaskStatus:
    try:
        return TaskStatus(value)
    except ValueError:
        raise MalformedMessage(f"unknown task status {value!r:.40}") from None


@dataclass(frozen=True)
class TaskReceipt(TaskRecord):
    """`output_cid`/`output_hash` are None unless Success; `fuel_used` is None where fuel is unmeasured (stated, not faked).

    Timings: `started_at` is the executor's clock (epoch ms) when it began,
    `exec_us` the sandbox run, `total_us` fetch + run + store.
    """

    TYPE: ClassVar[str] = "task_receipt"

    swarm: str
    task_id: str
    executor: str
    task_envelope_hash: bytes
    module_cid: str
    module_hash: bytes
    entrypoint: str
    input_cid: str
    input_hash: bytes
    output_cid: str | None
    output_hash: bytes | None
    status: TaskStatus
    fuel_used: int | None
    memory_peak: int
    started_at: int
    exec_us: int
    total_us: int
    detail: str
    sig: bytes = b""

    def unsigned_fields(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "swarm": self.swarm,
            "task_id": self.task_id,
            "executor": self.executor,
            "task_envelope_hash": self.task_envelope_hash.hex(),
            "module_cid": self.module_cid,
            "module_hash": self.module_hash.hex(),
            "entrypoint": self.entrypoint,
            "input_cid": self.input_cid,
            "input_hash": self.input_hash.hex(),
            "output_cid": self.output_cid,
            "output_hash": None if self.output_hash is None else self.output_hash.hex(),
            "status": TaskStatus(self.status).value,
            "fuel_used": self.fuel_used,
            "memory_peak": self.memory_peak,
            "started_at": self.started_at,
            "exec_us": self.exec_us,
            "total_us": self.total_us,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "TaskReceipt":
        cls._expect(obj)
        status = _status(obj["status"])
        output_cid = obj["output_cid"]
        output_hash = _opt_hex(obj, "output_hash", 32)
        if (status is TaskStatus.SUCCESS) != (output_cid is not None) or (output_cid is None) != (output_hash is None):
            raise MalformedMessage("a receipt has output_cid and output_hash exactly when its status is Success")
        if output_cid is not None:
            _cid(obj, "output_cid")
        return cls(
            swarm=wire.get_id(obj, "swarm"),
            task_id=wire.get_id(obj, "task_id"),
            executor=wire.get_id(obj, "executor"),
            task_envelope_hash=wire.get_hex(obj, "task_envelope_hash", 32),
            module_cid=_cid(obj, "module_cid"),
            module_hash=wire.get_hex(obj, "module_hash", 32),
            entrypoint=check_entrypoint(obj["entrypoint"]),
            input_cid=_cid(obj, "input_cid"),
            input_hash=wire.get_hex(obj, "input_hash", 32),
            output_cid=output_cid,
            output_hash=output_hash,
            status=status,
            fuel_used=_opt_int(obj, "fuel_used", MAX_FUEL),
            memory_peak=wire.get_int(obj, "memory_peak"),
            started_at=wire.get_int(obj, "started_at"),
            exec_us=wire.get_int(obj, "exec_us"),
            total_us=wire.get_int(obj, "total_us"),
            detail=wire.get_str(obj, "detail", _DETAIL_LEN),
            sig=wire.get_hex(obj, "sig", 64),
        )


async def verify_receipt(
    receipt: TaskReceipt,
    envelope: TaskEnvelope,
    executor_public_key: bytes,
    artifacts: Any = None,
    *,
    crypto: CryptoProvider,
) -> None:
    """Raise unless `receipt` is signed by the executor's registry key and binds to `envelope` (and `artifacts`).

    Cheap binding checks come first, then the signature, then (with an
    ArtifactStore) the hashes recomputed from the stored module, input and output.
    """
    if receipt.swarm != envelope.swarm:
        raise WrongSwarm(f"receipt is for swarm {receipt.swarm!r}, envelope for {envelope.swarm!r}")
    if receipt.task_envelope_hash != envelope.envelope_hash():
        raise ReceiptMismatch(f"receipt for {receipt.task_id!r} is bound to another envelope")
    for name in ("task_id", "module_cid", "input_cid", "entrypoint"):
        if getattr(receipt, name) != getattr(envelope, name):
            raise ReceiptMismatch(f"receipt {name} differs from the envelope's")
    budgets = envelope.budgets
    if receipt.fuel_used is not None and receipt.fuel_used > budgets.fuel_limit:
        raise ReceiptMismatch(f"receipt reports {receipt.fuel_used} fuel over a limit of {budgets.fuel_limit}")
    if receipt.memory_peak > budgets.memory_mb << 20:
        raise ReceiptMismatch(f"receipt reports a memory peak of {receipt.memory_peak} bytes over the budget")
    await receipt.verify(crypto, executor_public_key, swarm_id=envelope.swarm)
    if artifacts is None:
        return
    checks = [("module", receipt.module_cid, receipt.module_hash), ("input", receipt.input_cid, receipt.input_hash)]
    if receipt.output_cid is not None and receipt.output_hash is not None:
        checks.append(("output", receipt.output_cid, receipt.output_hash))
    for what, cid, digest in checks:
        if hashlib.sha256(artifacts.get_artifact(cid)).digest() != digest:
            raise ReceiptMismatch(f"{what} artifact {cid} does not hash to the receipt's {what}_hash")


@dataclass(frozen=True)
class MismatchReport(TaskRecord):
    """Signed by whoever spot-checked: the executor's receipt and a second executor's disagree."""

    TYPE: ClassVar[str] = "task_mismatch"

    swarm: str
    task_id: str
    reporter: str
    executor: str
    receipt_hash: bytes
    claimed_status: TaskStatus
    claimed_output_hash: bytes | None
    checker: str
    check_receipt_hash: bytes
    observed_status: TaskStatus
    observed_output_hash: bytes | None
    sig: bytes = b""

    def unsigned_fields(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "swarm": self.swarm,
            "task_id": self.task_id,
            "reporter": self.reporter,
            "executor": self.executor,
            "receipt_hash": self.receipt_hash.hex(),
            "claimed_status": TaskStatus(self.claimed_status).value,
            "claimed_output_hash": None if self.claimed_output_hash is None else self.claimed_output_hash.hex(),
            "checker": self.checker,
            "check_receipt_hash": self.check_receipt_hash.hex(),
            "observed_status": TaskStatus(self.observed_status).value,
            "observed_output_hash": None if self.observed_output_hash is None else self.observed_output_hash.hex(),
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "MismatchReport":
        cls._expect(obj)
        return cls(
            swarm=wire.get_id(obj, "swarm"),
            task_id=wire.get_id(obj, "task_id"),
            reporter=wire.get_id(obj, "reporter"),
            executor=wire.get_id(obj, "executor"),
            receipt_hash=wire.get_hex(obj, "receipt_hash", 32),
            claimed_status=_status(obj["claimed_status"]),
            claimed_output_hash=_opt_hex(obj, "claimed_output_hash", 32),
            checker=wire.get_id(obj, "checker"),
            check_receipt_hash=wire.get_hex(obj, "check_receipt_hash", 32),
            observed_status=_status(obj["observed_status"]),
            observed_output_hash=_opt_hex(obj, "observed_output_hash", 32),
            sig=wire.get_hex(obj, "sig", 64),
        )
