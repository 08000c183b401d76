"""Reading a WebAssembly binary's outline (sans-I/O): the task-ABI check and the memory cap for the browser sandbox.

wasmtime checks the ABI natively from its own reflection; a browser's
`WebAssembly.Module.exports()` gives names and kinds but no signatures, and a
module-defined memory cannot be given a maximum from JS. So the browser
sandbox reads the type, import, function, memory and export sections here and
rewrites the memory section's maximum down to the budget: `memory.grow` past
it then returns -1 inside the module, as wasmtime's store limit does.

Only the outline is read; full validation stays with the engine that compiles
the module (V8 or wasmtime). Any malformed byte raises ModuleRejected.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModuleRejected

__all__ = ["MAX_PAGES", "ModuleOutline", "outline", "require_abi", "with_memory_maximum"]

MAGIC = b"\x00asm\x01\x00\x00\x00"
MAX_PAGES = 65536  # 4 GiB: the largest 32-bit linear memory

SEC_TYPE, SEC_IMPORT, SEC_FUNCTION, SEC_MEMORY, SEC_EXPORT = 1, 2, 3, 5, 7
I32, I64 = 0x7F, 0x7E
_VALTYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128", 0x70: "funcref", 0x6F: "externref"}
_EXPORT_KINDS = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}


class Reader:
    """Bounded cursor over bytes: every read checks the end and raises ModuleRejected, never IndexError."""

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def at_end(self) -> bool:
        return self.pos >= self.end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise ModuleRejected("not a valid WebAssembly module: unexpected end")
        self.pos += 1
        return self.data[self.pos - 1]

    def bytes(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise ModuleRejected("not a valid WebAssembly module: length past the end")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def leb(self, bits: int = 32, signed: bool = False) -> int:
        """An LEB128 integer of at most `bits` bits (unsigned unless `signed`)."""
        result = shift = 0
        for _ in range((bits + 6) // 7):
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if signed and b & 0x40:
                    result -= 1 << shift
                lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
                if not lo <= result < hi:
                    raise ModuleRejected(f"not a valid WebAssembly module: integer out of range for {bits} bits")
                return result
        raise ModuleRejected("not a valid WebAssembly module: integer too long")

    def name(self) -> str:
        raw = self.bytes(self.leb())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ModuleRejected("not a valid WebAssembly module: a name is not UTF-8") from None


def sections(module: bytes) -> list[tuple[int, int, int, int]]:
    """(id, header start, contents start, end) of each section, in order; the header and every length checked."""
    if not isinstance(module, (bytes, bytearray)) or bytes(module[:8]) != MAGIC:
        raise ModuleRejected("not a valid WebAssembly module: bad magic or version")
    r = Reader(bytes(module), 8)
    out = []
    while not r.at_end():
        head = r.pos
        sid = r.byte()
        size = r.leb()
        if size > r.end - r.pos:
            raise ModuleRejected("not a valid WebAssembly module: section past the end")
        out.append((sid, head, r.pos, r.pos + size))
        r.pos += size
    return out


def encode_u32(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


@dataclass(frozen=True)
class ModuleOutline:
    """What the sandbox needs before running: signatures of exported functions, imports, the memory's limits."""

    imports: tuple[str, ...]
    func_exports: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]
    memory_exports: tuple[str, ...]
    memory_min: int | None  # pages; None when the module defines no memory
    memory_max: int | None


def read_functype(r: Reader) -> tuple[tuple[str, ...], tuple[str, ...]]:
    form = r.byte()
    if form != 0x60:
        raise ModuleRejected(f"not a valid WebAssembly module: unsupported type form 0x{form:02x}")
    sig = []
    for _ in range(2):
        count = r.leb()
        types = []
        for _ in range(count):
            t = r.byte()
            if t not in _VALTYPES:
                raise ModuleRejected(f"not a valid WebAssembly module: unsupported value type 0x{t:02x}")
            types.append(_VALTYPES[t])
        sig.append(tuple(types))
    return sig[0], sig[1]


def _limits(r: Reader) -> tuple[int, int | None]:
    flags = r.byte()
    if flags not in (0, 1):
        raise ModuleRejected(f"unsupported memory (flags 0x{flags:02x}: shared or 64-bit memories are outside the task ABI)")
    low = r.leb()
    high = r.leb() if flags == 1 else None
    return low, high


def outline(module: bytes) -> ModuleOutline:
    """The module's outline; ModuleRejected if its sections cannot be read."""
    types: list = []
    imports: list[str] = []
    funcs: list[int] = []
    exports: list[tuple[str, int, int]] = []
    memories: list[tuple[int, int | None]] = []
    imported_funcs = imported_mems = 0
    data = bytes(module)
    for sid, _, start, end in sections(data):
        r = Reader(data, start, end)
        if sid == SEC_TYPE:
            types = [read_functype(r) for _ in range(r.leb())]
        elif sid == SEC_IMPORT:
            for _ in range(r.leb()):
                imports.append(f"{r.name()}.{r.name()}")
                kind = r.byte()
                if kind == 0:
                    r.leb()
                    imported_funcs += 1
                elif kind == 2:
                    _limits(r)
                    imported_mems += 1
                else:  # table, global or tag: skip to the end, the import alone refuses the module
                    r.pos = end
                    break
        elif sid == SEC_FUNCTION:
            funcs = [r.leb() for _ in range(r.leb())]
        elif sid == SEC_MEMORY:
            memories = [_limits(r) for _ in range(r.leb())]
        elif sid == SEC_EXPORT:
            for _ in range(r.leb()):
                name = r.name()
                exports.append((name, r.byte(), r.leb()))
        else:
            continue
        if sid != SEC_IMPORT and r.pos != end:
            raise ModuleRejected(f"not a valid WebAssembly module: section {sid} has trailing bytes")
    func_exports = {}
    memory_exports = []
    for name, kind, index in exports:
        if kind == 0 and imported_funcs <= index < imported_funcs + len(funcs):
            tidx = funcs[index - imported_funcs]
            if tidx >= len(types):
                raise ModuleRejected("not a valid WebAssembly module: function type index out of range")
            func_exports[name] = types[tidx]
        elif kind == 2 and imported_mems <= index < imported_mems + len(memories):
            memory_exports.append(name)
    if len(memories) > 1:
        raise ModuleRejected("module defines more than one memory: outside the task ABI")
    low, high = memories[0] if memories else (None, None)
    return ModuleOutline(tuple(imports), func_exports, tuple(memory_exports), low, high)


def require_abi(info: ModuleOutline, entrypoint: str) -> None:
    """Raise ModuleRejected unless the outline fits the task ABI (tasks/sandbox.py), with the same wording as natively."""
    if info.imports:
        raise ModuleRejected(f"module imports {', '.join(info.imports[:4])}: task modules get no host imports")
    if "memory" not in info.memory_exports:
        raise ModuleRejected("module does not export its memory as 'memory'")
    if info.func_exports.get("alloc") != (("i32",), ("i32",)):
        raise ModuleRejected("module must export alloc: (i32) -> i32")
    if info.func_exports.get(entrypoint) != (("i32", "i32"), ("i64",)):
        raise ModuleRejected(f"module must export {entrypoint}: (i32, i32) -> i64")


def with_memory_maximum(module: bytes, max_pages: int) -> bytes:
    """The module with its memory's maximum lowered to `max_pages` (kept if already lower); other bytes untouched.

    The caller has checked the initial size against the budget: a minimum above
    the new maximum would make the module invalid.
    """
    data = bytes(module)
    for sid, head, start, end in sections(data):
        if sid != SEC_MEMORY:
            continue
        r = Reader(data, start, end)
        count = r.leb()
        if count != 1:
            return data
        low, high = _limits(r)
        cap = min(max_pages, MAX_PAGES) if high is None else min(high, max_pages)
        if low > cap:
            raise ModuleRejected(f"memory of {low} pages does not fit a maximum of {cap}")
        body = encode_u32(1) + b"\x01" + encode_u32(low) + encode_u32(cap) + data[r.pos : end]
        return data[:head] + bytes([SEC_MEMORY]) + encode_u32(len(body)) + body + data[end:]
    return data
