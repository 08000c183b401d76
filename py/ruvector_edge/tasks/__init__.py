"""Tasks: WebAssembly modules addressed by CID, run under budgets, with signed envelopes, claims and receipts."""

from .claims import Claim, ClaimBook, resolve_holder
from .coordinator import Assign, Completed, Coordinator, Failed, MemberState
from .envelope import Budgets, TaskEnvelope
from .executor import TaskExecutor, spot_check
from .receipt import MismatchReport, TaskReceipt, verify_receipt
from .sandbox import NativeSandbox, SandboxResult, TaskStatus

__all__ = [
    "Assign",
    "Budgets",
    "Claim",
    "ClaimBook",
    "Completed",
    "Coordinator",
    "Failed",
    "MemberState",
    "MismatchReport",
    "NativeSandbox",
    "SandboxResult",
    "TaskEnvelope",
    "TaskExecutor",
    "TaskReceipt",
    "TaskStatus",
    "resolve_holder",
    "spot_check",
    "verify_receipt",
]
