"""Fuel metering by rewriting a WebAssembly binary (sans-I/O), for the browser sandbox, where the engine has no fuel.

A browser cannot count instructions, so the module counts them itself: one
mutable i64 global, exported, starts at the fuel limit; every straight-line
segment of code subtracts its cost on entry, and where wasmtime checks its fuel
(function entries and loop headers, on every iteration) the module checks the
counter the same way (`<= 0`: set it to EXHAUSTED and trap). A trap leaving
EXHAUSTED is FuelExhausted; after a run, `limit - counter` (at most the limit,
as wasmtime reports it) is the fuel used.

The cost of a segment is wasmtime's: every operator costs 1 except `nop`,
`drop`, `block`, `loop`, `unreachable`, `return`, `else` and `end` (0), and
each function invocation costs 1 more (measured: an empty function costs 1). A
segment starts at the function entry, at each body of `block`/`loop`/`if`/
`else`, after each `end`, branch and call, so control only ever enters a
segment at its start and a run that completes is charged exactly the operators
it executed: the same `fuel_used` as NativeSandbox, and the same status at every
limit for plain code (tests/test_wasm_fuel.py checks both against wasmtime).
Bulk memory/table operators and successful grows also cost their count
operand, as wasmtime charges them (measured), and a start function 2 more.
What still parts: a run that traps was charged its whole last segment (an
upper bound of wasmtime's count); and around `memory.grow` wasmtime does more
than measured here (it charges some failed grows with a constant delta, and
checks fuel after a successful grow whose delta is computed), so a module
using grows can end with another status when its budget runs out right there.

Operators this reader does not know (SIMD, GC, exceptions, threads) make the
module unmeterable: `instrument` returns None with the reason, and the caller
runs it unmetered and says so, rather than guess at their immediates.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModuleRejected
from .wasm_module import Reader, encode_u32, read_functype, sections

__all__ = ["FUEL_EXPORT", "START_EXPORT", "MeteredModule", "instrument"]

FUEL_EXPORT = "__edge_fuel"
START_EXPORT = "__edge_start"
SEC_TYPE, SEC_FUNCTION, SEC_GLOBAL, SEC_EXPORT, SEC_START, SEC_CODE = 1, 3, 6, 7, 8, 10
START_COST = 2  # measured: wasmtime charges a start function 2 units beyond its body
_AFTER_GLOBAL = {7, 8, 9, 12, 10, 11}  # sections that come after the global section
_AFTER_EXPORT = {8, 9, 12, 10, 11}
_VALTYPES = {0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F}

# Immediate kinds of the operators this meter understands.
_NONE, _U32, _U32x2, _BLOCK, _BR_TABLE, _MEMARG, _BYTE, _I32, _I64, _F32, _F64, _SELECT_T, _HEAPTYPE = range(13)
_OPS: dict[int, int] = {0x00: _NONE, 0x01: _NONE, 0x02: _BLOCK, 0x03: _BLOCK, 0x04: _BLOCK, 0x05: _NONE, 0x0B: _NONE,
                        0x0C: _U32, 0x0D: _U32, 0x0E: _BR_TABLE, 0x0F: _NONE, 0x10: _U32, 0x11: _U32x2,
                        0x12: _U32, 0x13: _U32x2, 0x1A: _NONE, 0x1B: _NONE, 0x1C: _SELECT_T,
                        0x20: _U32, 0x21: _U32, 0x22: _U32, 0x23: _U32, 0x24: _U32, 0x25: _U32, 0x26: _U32,
                        0x3F: _BYTE, 0x40: _BYTE, 0x41: _I32, 0x42: _I64, 0x43: _F32, 0x44: _F64,
                        0xD0: _HEAPTYPE, 0xD1: _NONE, 0xD2: _U32}
_OPS.update({op: _MEMARG for op in range(0x28, 0x3F)})
_OPS.update({op: _NONE for op in range(0x45, 0xC5)})
# 0xFC prefix: saturating truncation (0-7), bulk memory and table operators (8-17).
_FC_OPS = {**{i: _NONE for i in range(8)}, 8: _U32x2, 9: _U32, 10: _U32x2, 11: _U32, 12: _U32x2, 13: _U32,
           14: _U32x2, 15: _U32, 16: _U32, 17: _U32}

_FREE = {0x01, 0x1A, 0x02, 0x03, 0x00, 0x0F, 0x05, 0x0B}  # nop, drop, block, loop, unreachable, return, else, end
_OPENS = {0x02, 0x03, 0x04}
# Operators wasmtime also charges their count operand (bytes, elements or pages; the i32 on top of the stack).
# memory.grow and table.grow are charged their delta only when they succeed (result != -1), as measured.
_COUNTED = {(0xFC, 8), (0xFC, 10), (0xFC, 11), (0xFC, 12), (0xFC, 14), (0xFC, 17)}
_GROWS = {(0xFC, 15), (0x40, None)}
# A new segment follows these: control flow, and calls (the callee checks the fuel charged before it).
_SEGMENT_ENDS = {0x02, 0x03, 0x04, 0x05, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x00, 0x10, 0x11, 0x12, 0x13}


class _Unmeterable(Exception):
    """An operator this meter does not understand (internal: instrument() answers None)."""


@dataclass(frozen=True)
class MeteredModule:
    """The rewritten binary, the name of the exported i64 global holding the fuel left and, when the
    module had a start function, the export the host calls in its place before anything else."""

    module: bytes
    fuel_export: str
    start_export: str | None = None


def _skip_immediate(r: Reader, kind: int) -> None:
    if kind == _NONE:
        return
    if kind == _U32:
        r.leb()
    elif kind == _U32x2:
        r.leb()
        r.leb()
    elif kind == _BLOCK:
        head = r.data[r.pos] if r.pos < r.end else None
        if head == 0x40 or head in _VALTYPES:
            r.pos += 1
        else:
            index = r.leb(33, signed=True)
            if index < 0:
                raise _Unmeterable(f"block type 0x{head:02x}")
    elif kind == _BR_TABLE:
        for _ in range(r.leb() + 1):
            r.leb()
    elif kind == _MEMARG:
        align = r.leb()
        if align & 0x40:
            raise _Unmeterable("multi-memory access")
        r.leb()
    elif kind == _BYTE:
        if r.byte() != 0:
            raise _Unmeterable("multi-memory access")
    elif kind == _I32:
        r.leb(32, signed=True)
    elif kind == _I64:
        r.leb(64, signed=True)
    elif kind == _F32:
        r.bytes(4)
    elif kind == _F64:
        r.bytes(8)
    elif kind == _SELECT_T:
        for _ in range(r.leb()):
            if r.byte() not in _VALTYPES:
                raise _Unmeterable("select with a non-numeric type")
    elif kind == _HEAPTYPE:
        if r.byte() not in (0x70, 0x6F):
            raise _Unmeterable("ref.null of a typed reference")


EXHAUSTED = -(1 << 63)  # the counter's value once a check has trapped


def _charge(global_index: int, cost: int) -> bytes:
    """global -= cost (stack-neutral, valid anywhere an instruction is)."""
    g = encode_u32(global_index)
    return b"\x23" + g + b"\x42" + _sleb(cost) + b"\x7d\x24" + g


def _check(global_index: int) -> bytes:
    """If no fuel is left (global <= 0, wasmtime's test): set the global to EXHAUSTED and trap."""
    g = encode_u32(global_index)
    return b"\x23" + g + b"\x42\x00\x57\x04\x40\x42" + _sleb(EXHAUSTED) + b"\x24" + g + b"\x00\x0b"


def _charge_count(global_index: int, scratch: int) -> bytes:
    """global -= the i32 on top of the stack (left there, through a scratch local)."""
    g, t = encode_u32(global_index), encode_u32(scratch)
    return b"\x22" + t + b"\x23" + g + b"\x20" + t + b"\xad\x7d\x24" + g


def _charge_grow(global_index: int, scratch: int) -> tuple[bytes, bytes]:
    """(before, after) a grow: keep its delta in the scratch local, charge it if the result is not -1 (left on the stack)."""
    g, t, res = encode_u32(global_index), encode_u32(scratch), encode_u32(scratch + 1)
    before = b"\x22" + t
    after = (b"\x22" + res + b"\x20" + res + b"\x41\x7f\x47\x04\x40"
             + b"\x23" + g + b"\x20" + t + b"\xad\x7d\x24" + g + b"\x0b")
    return before, after


def _sleb(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if (value == 0 and not b & 0x40) or (value == -1 and b & 0x40):
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def _instrument_body(data: bytes, start: int, end: int, global_index: int, params: int) -> bytes:
    """One function body (locals + expression) with a charge at the start of every segment that costs anything.

    Two i32 locals are added (after the function's own) for the counted operators' charges.
    """
    r = Reader(data, start, end)
    groups = r.leb()
    groups_end = r.pos
    scratch = params
    for _ in range(groups):
        scratch += r.leb()
        t = r.byte()
        if t not in _VALTYPES:
            raise _Unmeterable(f"local of type 0x{t:02x}")
    if scratch >= 49_999:
        raise _Unmeterable("too many locals to add a scratch local")
    out = bytearray(encode_u32(groups + 1) + data[groups_end : r.pos] + b"\x02\x7f")
    segment = bytearray()
    cost = 0
    depth = 1
    out.extend(_charge(global_index, 1) + _check(global_index))  # ENTRY_VARIANT
    checked = False

    def flush() -> None:
        nonlocal cost, checked
        if checked:
            out.extend(_check(global_index))
            checked = False
        if cost:
            out.extend(_charge(global_index, cost))
        out.extend(segment)
        segment.clear()
        cost = 0

    while depth:
        op_start = r.pos
        op = r.byte()
        sub = None
        if op == 0xFC:
            sub = r.leb()
            if sub not in _FC_OPS:
                raise _Unmeterable(f"operator 0xfc {sub}")
            _skip_immediate(r, _FC_OPS[sub])
        elif op in _OPS:
            _skip_immediate(r, _OPS[op])
        else:
            raise _Unmeterable(f"operator 0x{op:02x}")
        if (op, sub) in _COUNTED:
            segment.extend(_charge_count(global_index, scratch))
            segment.extend(data[op_start : r.pos])
        elif (op, sub) in _GROWS:
            before, after = _charge_grow(global_index, scratch)
            segment.extend(before + data[op_start : r.pos] + after)
        else:
            segment.extend(data[op_start : r.pos])
        if op not in _FREE:
            cost += 1
        if op in _OPENS:
            depth += 1
        elif op == 0x0B:
            depth -= 1
        if op in _SEGMENT_ENDS:
            flush()
            checked = op == 0x03  # a loop header: wasmtime checks the fuel there, on every iteration
    if r.pos != end:
        raise ModuleRejected("not a valid WebAssembly module: code after a function's final end")
    return bytes(out)


def _vec_section(sid: int, count: int, items: bytes) -> bytes:
    body = encode_u32(count) + items
    return bytes([sid]) + encode_u32(len(body)) + body


def instrument(module: bytes, fuel_limit: int) -> tuple[MeteredModule | None, str]:
    """(the metered module, "") or (None, why it cannot be metered). ModuleRejected if the binary is malformed.

    The global starts at `fuel_limit` and a start function is metered too, as
    under wasmtime (whose fuel is set before instantiation). It is exported
    instead of run by instantiation, so that running out of fuel in it is
    read from the counter (FuelExhausted) rather than lost with the instance;
    with no imports, nothing can tell the two orders apart.
    """
    data = bytes(module)
    parts = sections(data)
    if any(sid == 2 for sid, *_ in parts):
        return None, "modules with imports are not metered"
    n_globals = 0
    export_names: set[str] = set()
    exports_count = 0
    param_counts: list[int] = []
    func_types: list[int] = []
    start_func: int | None = None
    for sid, _, start, end in parts:
        r = Reader(data, start, end)
        if sid == SEC_TYPE:
            param_counts = [len(read_functype(r)[0]) for _ in range(r.leb())]
        elif sid == SEC_FUNCTION:
            func_types = [r.leb() for _ in range(r.leb())]
        elif sid == SEC_GLOBAL:
            n_globals = r.leb()
        elif sid == SEC_START:
            start_func = r.leb()
        elif sid == SEC_EXPORT:
            exports_count = r.leb()
            for _ in range(exports_count):
                export_names.add(r.name())
                r.byte()
                r.leb()
    def unused(name: str) -> str:
        while name in export_names:
            name += "_"
        return name

    name = unused(FUEL_EXPORT)
    start_name = unused(START_EXPORT) if start_func is not None else None
    if any(t >= len(param_counts) for t in func_types):
        raise ModuleRejected("not a valid WebAssembly module: function type index out of range")
    initial = fuel_limit - (START_COST if start_func is not None else 0)
    fuel_global = b"\x7e\x01\x42" + _sleb(initial) + b"\x0b"
    added = encode_u32(len(name.encode())) + name.encode() + b"\x03" + encode_u32(n_globals)
    if start_name is not None:
        added += encode_u32(len(start_name.encode())) + start_name.encode() + b"\x00" + encode_u32(start_func)
    n_added = 1 if start_name is None else 2
    try:
        out = bytearray(data[:8])
        have_global = any(sid == SEC_GLOBAL for sid, *_ in parts)
        have_export = any(sid == SEC_EXPORT for sid, *_ in parts)
        for sid, head, start, end in parts:
            if sid in _AFTER_GLOBAL and not have_global:
                out += _vec_section(SEC_GLOBAL, 1, fuel_global)
                have_global = True
            if sid in _AFTER_EXPORT and not have_export:
                out += _vec_section(SEC_EXPORT, n_added, added)
                have_export = True
            r = Reader(data, start, end)
            if sid == SEC_GLOBAL:
                count = r.leb()
                out += _vec_section(sid, count + 1, data[r.pos : end] + fuel_global)
            elif sid == SEC_EXPORT:
                count = r.leb()
                out += _vec_section(sid, count + n_added, data[r.pos : end] + added)
            elif sid == SEC_CODE:
                bodies = bytearray()
                count = r.leb()
                if count != len(func_types):
                    raise ModuleRejected("not a valid WebAssembly module: function and code counts differ")
                for index in range(count):
                    size = r.leb()
                    if size > r.end - r.pos:
                        raise ModuleRejected("not a valid WebAssembly module: function body past the end")
                    body = _instrument_body(data, r.pos, r.pos + size, n_globals, param_counts[func_types[index]])
                    r.pos += size
                    bodies += encode_u32(len(body)) + body
                if r.pos != end:
                    raise ModuleRejected("not a valid WebAssembly module: code section has trailing bytes")
                out += _vec_section(sid, count, bytes(bodies))
            elif sid != SEC_START:
                out += data[head:end]
        if not have_global:
            out += _vec_section(SEC_GLOBAL, 1, fuel_global)
        if not have_export:
            out += _vec_section(SEC_EXPORT, n_added, added)
    except _Unmeterable as exc:
        return None, f"not metered: {exc}"
    return MeteredModule(bytes(out), name, start_name), ""
