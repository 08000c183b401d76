"""Native WebAssembly sandbox (wasmtime): a module runs with fuel, memory and wall-clock budgets and no host access.

Task ABI (the only thing a module gets; the browser sandbox implements the same):
  * the module imports nothing (a module with any import is refused) and exports
    `memory` (its linear memory), `alloc(len: i32) -> i32` and the entrypoint
    `(ptr: i32, len: i32) -> i64`;
  * the host calls `alloc(len(input))`, copies the input there, calls the
    entrypoint with (ptr, len) and reads the output from the returned
    `(out_ptr << 32) | out_len` (both unsigned 32-bit);
  * fuel covers `alloc` and the entrypoint together.

Statuses: a trap is Error, running out of fuel FuelExhausted, the wall-clock
timer (epoch interruption) Timeout. A denied `memory.grow` returns -1 to the
module rather than trapping, and wasmtime-py exposes no grow-failure hook, so a
run that fails (trap or bad output) is run once more with twice the memory: if
that run's memory goes past the budget, the failure was the budget's and the
status is OutOfMemory. Runs are deterministic (no imports, no clock), so the
probe sees what the first run would have done with more memory. A module whose
initial memory exceeds the budget is OutOfMemory without running.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from ..errors import ModuleRejected, ProviderUnavailable
from .envelope import Budgets

try:
    import wasmtime
except ImportError:  # pragma: no cover - an environment installed without the wheel's dependencies
    wasmtime = None

__all__ = ["NativeSandbox", "SandboxResult", "TaskStatus", "WASM_PAGE"]

WASM_PAGE = 65536


class TaskStatus(str, enum.Enum):
    SUCCESS = "Success"
    ERROR = "Error"
    TIMEOUT = "Timeout"
    OUT_OF_MEMORY = "OutOfMemory"
    FUEL_EXHAUSTED = "FuelExhausted"


@dataclass(frozen=True)
class SandboxResult:
    """`output` is empty unless Success; `fuel_used` is None where it is not measured.

    wasmtime does not flush the fuel counter when an epoch interrupt stops a
    loop (it reads back as a handful of units), so a Timeout reports fuel as
    unmeasured rather than a wrong number; the browser sandbox may not meter at all.
    """

    status: TaskStatus
    output: bytes
    fuel_used: int | None
    memory_peak: int
    exec_us: int
    detail: str


def _classify(trap: "wasmtime.Trap") -> TaskStatus:
    code = trap.trap_code
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return TaskStatus.FUEL_EXHAUSTED
    if code == wasmtime.TrapCode.INTERRUPT:
        return TaskStatus.TIMEOUT
    return TaskStatus.ERROR


def _last_line(message: str) -> str:
    """The cause of a trap without wasmtime's backtrace (which names offsets that differ between builds)."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:200]


class _Watchdog:
    """One thread per sandbox that bumps the engine's epoch when the armed deadline passes.

    A thread per run (threading.Timer) would cost a thread start per task; this
    one sleeps on a condition until armed. The sandbox runs one task at a time,
    so one epoch tick interrupts exactly the run that overran.
    """

    def __init__(self, engine: "wasmtime.Engine") -> None:
        self._engine = engine
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="wasm-watchdog", daemon=True)
        self._thread.start()

    def arm(self, timeout_s: float) -> None:
        with self._cond:
            self._deadline = time.monotonic() + timeout_s
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    self._engine.increment_epoch()
                    self._deadline = None
                else:
                    self._cond.wait(remaining)


class NativeSandbox:
    """Compiles (and caches, by SHA-256) modules once; each run gets a fresh store and instance.

    Runs are serialised (one lock): the watchdog's epoch tick is engine-wide, and
    an executor runs one task at a time. Most of a warm run's ~200 µs is
    wasmtime-py's per-call binding overhead (~35 µs per export call), not wasm."""

    def __init__(self, *, max_output_bytes: int = 16 << 20, module_cache: int = 64) -> None:
        if wasmtime is None:
            raise ProviderUnavailable("the native sandbox needs wasmtime (pip install wasmtime)")
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        config.wasm_threads = False
        config.wasm_multi_memory = False
        self.engine = wasmtime.Engine(config)
        self.max_output_bytes = max_output_bytes
        self._cache: OrderedDict[bytes, tuple[wasmtime.Module, dict, set[str]]] = OrderedDict()
        self._cache_size = module_cache
        self._lock = threading.RLock()
        self._watchdog = _Watchdog(self.engine)

    def close(self) -> None:
        self._watchdog.close()

    def __enter__(self) -> "NativeSandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def compile(self, module_bytes: bytes, entrypoint: str) -> "wasmtime.Module":
        """The compiled module, or ModuleRejected if it is invalid, imports anything or misses an ABI export."""
        with self._lock:
            return self._compile(module_bytes, entrypoint)

    def _compile(self, module_bytes: bytes, entrypoint: str) -> "wasmtime.Module":
        key = hashlib.sha256(module_bytes).digest()
        cached = self._cache.get(key)
        if cached is None:
            try:
                module = wasmtime.Module(self.engine, module_bytes)
            except wasmtime.WasmtimeError as exc:
                raise ModuleRejected(f"not a valid WebAssembly module: {str(exc)[:200]}") from None
            if module.imports:
                names = ", ".join(f"{i.module}.{i.name}" for i in module.imports[:4])
                raise ModuleRejected(f"module imports {names}: task modules get no host imports")
            exports = {e.name: e.type for e in module.exports}
            if not isinstance(exports.get("memory"), wasmtime.MemoryType):
                raise ModuleRejected("module does not export its memory as 'memory'")
            self._check_func(exports, "alloc", [wasmtime.ValType.i32()], [wasmtime.ValType.i32()])
            cached = self._cache[key] = (module, exports, set())
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        module, exports, checked = cached
        if entrypoint not in checked:
            self._check_func(exports, entrypoint, [wasmtime.ValType.i32()] * 2, [wasmtime.ValType.i64()])
            checked.add(entrypoint)
        return module

    @staticmethod
    def _check_func(exports: dict, name: str, params: list, results: list) -> None:
        ty = exports.get(name)
        if not isinstance(ty, wasmtime.FuncType) or list(ty.params) != params or list(ty.results) != results:
            raise ModuleRejected(f"module must export {name}: ({', '.join(map(str, params))}) -> {results[0]}")

    def run(self, module_bytes: bytes, entrypoint: str, data: bytes, budgets: Budgets) -> SandboxResult:
        """Run one task; raises ModuleRejected (before running) for a module outside the ABI."""
        limit = budgets.memory_mb << 20
        with self._lock:
            module = self.compile(module_bytes, entrypoint)
            result = self._attempt(module, entrypoint, data, budgets, limit)
            if result.status is TaskStatus.ERROR and result.memory_peak:
                probe = self._attempt(module, entrypoint, data, budgets, min(2 * limit, 1 << 32))
                if probe.memory_peak > limit:
                    return dataclasses.replace(result, status=TaskStatus.OUT_OF_MEMORY, detail="needs more memory than the budget: " + result.detail)
            return result

    def _attempt(self, module: "wasmtime.Module", entrypoint: str, data: bytes, budgets: Budgets, limit: int) -> SandboxResult:
        store = wasmtime.Store(self.engine)
        store.set_limits(memory_size=limit, instances=1, tables=1, memories=1)
        store.set_fuel(budgets.fuel_limit)
        store.set_epoch_deadline(1)
        memory = None
        start = time.perf_counter_ns()
        self._watchdog.arm(budgets.timeout_ms / 1000)
        try:
            instance = wasmtime.Instance(store, module, [])
            exports = instance.exports(store)
            memory = exports["memory"]
            ptr = exports["alloc"](store, len(data)) & 0xFFFFFFFF
            if ptr + len(data) > memory.data_len(store):
                return self._result(store, budgets, memory, start, TaskStatus.ERROR, "alloc returned a range outside memory")
            memory.write(store, data, ptr)
            packed = exports[entrypoint](store, ptr, len(data)) & 0xFFFFFFFFFFFFFFFF
            out_ptr, out_len = packed >> 32, packed & 0xFFFFFFFF
            if out_len > self.max_output_bytes:
                return self._result(store, budgets, memory, start, TaskStatus.ERROR, f"output of {out_len} bytes exceeds the limit")
            if out_ptr + out_len > memory.data_len(store):
                return self._result(store, budgets, memory, start, TaskStatus.ERROR, "output range outside memory")
            output = memory.read(store, out_ptr, out_ptr + out_len)
            return self._result(store, budgets, memory, start, TaskStatus.SUCCESS, "", bytes(output))
        except wasmtime.Trap as trap:
            return self._result(store, budgets, memory, start, _classify(trap), _last_line(trap.message))
        except wasmtime.WasmtimeError as exc:  # instantiation refused, e.g. initial memory above the limit
            status = TaskStatus.OUT_OF_MEMORY if "memory" in str(exc).lower() else TaskStatus.ERROR
            return self._result(store, budgets, memory, start, status, _last_line(str(exc)))
        finally:
            self._watchdog.disarm()

    def _result(
        self, store: "wasmtime.Store", budgets: Budgets, memory: object, start: int, status: TaskStatus, detail: str, output: bytes = b""
    ) -> SandboxResult:
        exec_us = (time.perf_counter_ns() - start) // 1000
        peak = memory.data_len(store) if memory is not None else 0
        return SandboxResult(
            status=status,
            output=output if status is TaskStatus.SUCCESS else b"",
            fuel_used=None if status is TaskStatus.TIMEOUT else budgets.fuel_limit - store.get_fuel(),
            memory_peak=peak,
            exec_us=exec_us,
            detail=detail,
        )
