"""The coordinator role, sans-I/O: which member runs which task, and what happens when one doesn't.

Inputs are verified facts (member capabilities and measured load from signed
registrations and heartbeats, submitted envelopes, verified receipts, failures)
plus the time; outputs are events for the I/O shell to act on (send the task to
a member, report a result or a failure). Pending tasks are served by priority
(higher first), then earliest deadline, then task id; each goes to the live
member with the capability and the lowest reported load, counting what this
coordinator has already assigned to it. An assignment that brings no receipt
before its lease ends, an executor reported failed, or a receipt with a
retryable status sends the task to another member until `max_attempts`; a task
past its deadline fails. A member excluded (its receipt failed a spot-check,
tasks/swarm.py) is assigned nothing more, and what it holds goes back to the queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ..errors import MalformedMessage, TaskDeadlinePassed
from .envelope import TaskEnvelope
from .receipt import TaskReceipt
from .sandbox import TaskStatus

__all__ = ["Assign", "Completed", "Coordinator", "Failed", "MemberState"]


@dataclass(frozen=True)
class Assign:
    task_id: str
    agent_id: str
    attempt: int
    lease_until: int


@dataclass(frozen=True)
class Completed:
    task_id: str
    receipt: TaskReceipt


@dataclass(frozen=True)
class Failed:
    task_id: str
    reason: str


Event = Union[Assign, Completed, Failed]


@dataclass
class MemberState:
    capabilities: frozenset[str]
    load: float
    queue_depth: int
    last_seen: int
    assigned: int = 0


@dataclass
class _Task:
    envelope: TaskEnvelope
    capability: str
    attempts: int = 0
    agent_id: str | None = None
    lease_until: int = 0
    tried: set[str] = field(default_factory=set)


class Coordinator:
    def __init__(
        self,
        *,
        liveness_ms: int = 15_000,
        lease_grace_ms: int = 5_000,
        max_attempts: int = 3,
        retry_statuses: frozenset[TaskStatus] = frozenset({TaskStatus.TIMEOUT}),
        max_tasks: int = 10_000,
    ) -> None:
        self.liveness_ms = liveness_ms
        self.lease_grace_ms = lease_grace_ms
        self.max_attempts = max_attempts
        self.retry_statuses = retry_statuses
        self.max_tasks = max_tasks
        self.members: dict[str, MemberState] = {}
        self.excluded: dict[str, str] = {}  # member -> why it gets no assignments
        self._tasks: dict[str, _Task] = {}

    # Facts in ------------------------------------------------------------------------------
    def update_member(self, agent_id: str, capabilities: frozenset[str] | set[str], load: float, queue_depth: int, now: int) -> None:
        state = self.members.get(agent_id)
        if state is None:
            self.members[agent_id] = MemberState(frozenset(capabilities), load, queue_depth, now)
        else:
            state.capabilities, state.load, state.queue_depth, state.last_seen = frozenset(capabilities), load, queue_depth, now

    def submit(self, envelope: TaskEnvelope, now: int, *, capability: str = "wasm") -> None:
        """Queue a verified envelope; assignment happens at the next `poll`."""
        if envelope.deadline <= now:
            raise TaskDeadlinePassed(f"task {envelope.task_id!r} is already past its deadline")
        if envelope.task_id in self._tasks:
            raise MalformedMessage(f"task {envelope.task_id!r} is already submitted")
        if len(self._tasks) >= self.max_tasks:
            raise MalformedMessage(f"coordinator already tracks {self.max_tasks} tasks")
        self._tasks[envelope.task_id] = _Task(envelope, capability)

    def on_receipt(self, receipt: TaskReceipt, now: int) -> list[Event]:
        """A receipt the caller verified (verify_receipt) against this task's envelope.

        A late receipt from an earlier assignee whose lease ran out still settles
        the task (the work is done and signed); one from a member never assigned is ignored.
        """
        task = self._tasks.get(receipt.task_id)
        if task is None or receipt.executor not in task.tried:
            return []
        if receipt.status in self.retry_statuses and task.attempts < self.max_attempts:
            if receipt.executor == task.agent_id:
                self._release(task)
            return []
        self._release(task)
        del self._tasks[receipt.task_id]
        return [Completed(receipt.task_id, receipt)]

    def on_failure(self, task_id: str, agent_id: str) -> None:
        """The member running `task_id` is gone or said it cannot run it: the task goes back to the queue."""
        task = self._tasks.get(task_id)
        if task is not None and task.agent_id == agent_id:
            self._release(task)

    def exclude(self, agent_id: str, reason: str) -> None:
        """Assign `agent_id` nothing more; the tasks it holds go back to the queue now."""
        self.excluded[agent_id] = reason
        for task in self._tasks.values():
            if task.agent_id == agent_id:
                self._release(task)

    def reinstate(self, agent_id: str) -> None:
        """Undo `exclude` (an admin's call: a report can be mistaken, see tasks/swarm.py)."""
        self.excluded.pop(agent_id, None)

    # Decisions out -------------------------------------------------------------------------
    def poll(self, now: int) -> list[Event]:
        events: list[Event] = []
        for task_id, task in list(self._tasks.items()):
            if task.envelope.deadline <= now:
                self._release(task)
                del self._tasks[task_id]
                events.append(Failed(task_id, "deadline"))
            elif task.agent_id is not None and now >= task.lease_until:
                self._release(task)
        pending = sorted(
            (t for t in self._tasks.values() if t.agent_id is None),
            key=lambda t: (-t.envelope.priority, t.envelope.deadline, t.envelope.task_id),
        )
        for task in pending:
            if task.attempts >= self.max_attempts:
                del self._tasks[task.envelope.task_id]
                events.append(Failed(task.envelope.task_id, "attempts"))
                continue
            agent_id = self._pick(task, now)
            if agent_id is None:
                continue
            task.attempts += 1
            task.agent_id = agent_id
            task.tried.add(agent_id)
            task.lease_until = min(now + task.envelope.budgets.timeout_ms + self.lease_grace_ms, task.envelope.deadline)
            self.members[agent_id].assigned += 1
            events.append(Assign(task.envelope.task_id, agent_id, task.attempts, task.lease_until))
        return events

    def assignment(self, task_id: str) -> str | None:
        task = self._tasks.get(task_id)
        return None if task is None else task.agent_id

    def _pick(self, task: _Task, now: int) -> str | None:
        live = [
            (agent_id, m)
            for agent_id, m in self.members.items()
            if task.capability in m.capabilities and now - m.last_seen <= self.liveness_ms
            and agent_id not in self.excluded
        ]
        if not live:
            return None
        fresh = [(a, m) for a, m in live if a not in task.tried] or live
        return min(fresh, key=lambda am: (am[1].load, am[1].queue_depth + am[1].assigned, am[0]))[0]

    def _release(self, task: _Task) -> None:
        if task.agent_id is not None:
            member = self.members.get(task.agent_id)
            if member is not None and member.assigned > 0:
                member.assigned -= 1
            task.agent_id = None
