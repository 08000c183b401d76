"""Browser WebAssembly sandbox: the task ABI of tasks/sandbox.py, run in a dedicated Web Worker through the `edgeSandbox` bridge.

Imported only under Pyodide (platform.default_sandbox()). The module's outline
is read here (wasm_module.py) because the browser's reflection has no
signatures: a module outside the ABI is refused before anything runs, with the
native wording. Budgets map onto what a browser can enforce:

* memory: the memory section's maximum is lowered to the budget, so a
  `memory.grow` past it returns -1 inside the module as under wasmtime's limit;
  a failed run that touched memory is re-run once with twice the cap (the
  native probe) and is OutOfMemory if it then goes past the budget;
* time: web/bridges/sandbox.js terminates the worker at the deadline (Timeout)
  and starts a fresh one for the next task;
* fuel: the module is rewritten to count its own fuel (wasm_fuel.py), in
  wasmtime's units, so `fuel_used` matches NativeSandbox's; a module using
  operators the meter does not know (SIMD...) runs unmetered, with `fuel_used`
  None and the receipt's detail saying so, rather than a number nobody counted.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from pyodide.ffi import JsProxy, jsnull  # type: ignore[import-not-found]

from ..errors import ModuleRejected
from ..platform.jsffi import js_bridge
from ..platform.jsffi import to_u8 as _u8
from .envelope import Budgets
from .sandbox import WASM_PAGE, SandboxResult, TaskStatus
from .wasm_fuel import instrument
from .wasm_module import MAX_PAGES, ModuleOutline, outline, require_abi, with_memory_maximum

__all__ = ["BrowserSandbox", "FUEL_UNMETERED"]

FUEL_UNMETERED = "fuel unmetered in the browser"


def _bridge() -> JsProxy:
    return js_bridge("edgeSandbox", "web/bridges/sandbox.js")


def _field(answer: JsProxy, name: str) -> object:
    """A field of the bridge's answer, None when absent or JS null (which Pyodide hands over as `jsnull`, not None)."""
    value = getattr(answer, name, None)
    return None if value is jsnull else value


def _with_note(detail: str, note: str) -> str:
    return "; ".join(part for part in (detail, note) if part)[:256]


@dataclass(frozen=True)
class _Prepared:
    """A module as the bridge runs it: memory capped, fuel counter added when the meter can; `key` names it in the bridge."""

    key: str
    module: bytes
    fuel_export: str | None
    start_export: str | None  # the module's start function, which the worker calls first
    note: str  # why fuel is not metered, or ""


class BrowserSandbox:
    """Same `SandboxResult`s as NativeSandbox, from `await run_async(...)` (a browser cannot block on a worker).

    Outlines and prepared binaries are cached by SHA-256; the bridge keeps
    the compiled modules and one warm worker, so a repeated task pays neither
    compilation nor worker start-up.
    """

    def __init__(self, *, max_output_bytes: int = 16 << 20, module_cache: int = 64) -> None:
        self._js = _bridge()
        self.max_output_bytes = max_output_bytes
        self._outlines: OrderedDict[bytes, ModuleOutline] = OrderedDict()
        self._prepared_cache: OrderedDict[tuple[bytes, int, int], _Prepared] = OrderedDict()
        self._cache_size = module_cache

    def _outline(self, module: bytes, digest: bytes) -> ModuleOutline:
        info = self._outlines.get(digest)
        if info is None:
            info = self._outlines[digest] = outline(module)
            while len(self._outlines) > self._cache_size:
                self._outlines.popitem(last=False)
        else:
            self._outlines.move_to_end(digest)
        return info

    def _prepared(self, module: bytes, digest: bytes, pages: int, fuel_limit: int) -> _Prepared:
        """The module with its memory maximum at `pages` and a fuel counter starting at `fuel_limit`, cached."""
        cache_key = (digest, pages, fuel_limit)
        entry = self._prepared_cache.get(cache_key)
        if entry is None:
            capped = with_memory_maximum(module, pages)
            metered, why = instrument(capped, fuel_limit)
            binary = metered.module if metered else capped
            entry = _Prepared(hashlib.sha256(binary).hexdigest(), binary, metered.fuel_export if metered else None,
                              metered.start_export if metered else None, "" if metered else f"{FUEL_UNMETERED} ({why})")
            self._prepared_cache[cache_key] = entry
            while len(self._prepared_cache) > self._cache_size:
                self._prepared_cache.popitem(last=False)
        else:
            self._prepared_cache.move_to_end(cache_key)
        return entry

    async def run_async(self, module_bytes: bytes, entrypoint: str, data: bytes, budgets: Budgets) -> SandboxResult:
        """Run one task; raises ModuleRejected (before running) for a module outside the ABI."""
        digest = hashlib.sha256(module_bytes).digest()
        info = self._outline(module_bytes, digest)
        require_abi(info, entrypoint)
        pages = min(budgets.memory_mb * (1 << 20) // WASM_PAGE, MAX_PAGES)
        if info.memory_min is not None and info.memory_min > pages:
            detail = f"initial memory of {info.memory_min} pages exceeds the budget of {pages}"
            return SandboxResult(TaskStatus.OUT_OF_MEMORY, b"", 0, 0, 0, detail)
        result = await self._attempt(module_bytes, digest, entrypoint, data, budgets, pages)
        if result.status is TaskStatus.ERROR and result.memory_peak and pages < MAX_PAGES:
            probe = await self._attempt(module_bytes, digest, entrypoint, data, budgets, min(2 * pages, MAX_PAGES))
            if probe.memory_peak > pages * WASM_PAGE:
                detail = "needs more memory than the budget: " + result.detail
                return dataclasses.replace(result, status=TaskStatus.OUT_OF_MEMORY, detail=detail[:256])
        return result

    async def _attempt(self, module: bytes, digest: bytes, entrypoint: str, data: bytes, budgets: Budgets, pages: int) -> SandboxResult:
        prepared = self._prepared(module, digest, pages, budgets.fuel_limit)
        payload = None if self._js.has(prepared.key) else _u8(prepared.module)
        answer = await self._js.run(
            prepared.key, payload, entrypoint, _u8(data), budgets.timeout_ms, self.max_output_bytes,
            prepared.fuel_export, prepared.start_export,
        )
        rejected = _field(answer, "rejected")
        if rejected:
            raise ModuleRejected(f"not a valid WebAssembly module: {rejected}"[:256])
        status = TaskStatus(answer.status)
        fuel_left = _field(answer, "fuelLeft")
        if prepared.fuel_export is None or status is TaskStatus.TIMEOUT:
            fuel_used = None
        elif status is TaskStatus.FUEL_EXHAUSTED:
            fuel_used = budgets.fuel_limit  # as natively: the whole budget
        elif _field(answer, "instantiated") is False:
            fuel_used = 0  # as natively: a metered module's start function runs after instantiation, so nothing ran
        elif fuel_left is None:
            fuel_used = None
        else:
            fuel_used = min(budgets.fuel_limit, budgets.fuel_limit - int(fuel_left))  # reported as wasmtime does
        note = prepared.note or ("" if fuel_used is not None or status is TaskStatus.TIMEOUT else FUEL_UNMETERED)
        return SandboxResult(
            status=status,
            output=answer.output.to_bytes() if status is TaskStatus.SUCCESS else b"",
            fuel_used=fuel_used,
            memory_peak=int(answer.memoryPeak),
            exec_us=int(answer.execUs),
            detail=_with_note(str(answer.detail), note),
        )
