"""A sample task module, encoded here byte by byte, so the demo and the page need no WAT compiler.

`sample_module()` follows the task ABI (tasks/sandbox.py): no imports, exports
`memory`, `alloc(len) -> ptr` (a bump allocator that grows memory as needed) and
`run(ptr, len) -> (ptr << 32) | len`, which upper-cases ASCII letters of the
input in place, so the output is visibly the input's work. The equivalent WAT:

    (func $alloc (param $n i32) (result i32) (local $p i32) (local $pages i32)
      p = top; top += n; pages = (top + 65535) >> 16
      if pages > memory.size: drop(memory.grow(pages - memory.size)); return p)
    (func $run (param $p i32) (param $n i32) (result i64) (local $i i32) (local $c i32)
      for i in 0..n: c = mem[p+i]; if c - 'a' <u 26: mem[p+i] = c - 32
      return (p << 32) | n)
"""

from __future__ import annotations

__all__ = ["SAMPLE_ENTRYPOINT", "sample_module"]

SAMPLE_ENTRYPOINT = "run"

I32, I64 = 0x7F, 0x7E
# Opcodes used below.
BLOCK, LOOP, IF, END, BR, BR_IF, DROP = 0x02, 0x03, 0x04, 0x0B, 0x0C, 0x0D, 0x1A
LOCAL_GET, LOCAL_SET, GLOBAL_GET, GLOBAL_SET = 0x20, 0x21, 0x23, 0x24
I32_LOAD8_U, I32_STORE8, MEMORY_SIZE, MEMORY_GROW = 0x2D, 0x3A, 0x3F, 0x40
I32_CONST, I64_CONST = 0x41, 0x42
I32_LT_U, I32_GT_U, I32_GE_U = 0x49, 0x4B, 0x4F
I32_ADD, I32_SUB, I32_SHR_U = 0x6A, 0x6B, 0x76
I64_OR, I64_SHL, I64_EXTEND_I32_U = 0x84, 0x86, 0xAD
VOID = 0x40


def _uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        done = (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40)
        out.append(byte | (0 if done else 0x80))
        if done:
            return bytes(out)


def _vec(items: list[bytes]) -> bytes:
    return _uleb(len(items)) + b"".join(items)


def _name(text: str) -> bytes:
    return _uleb(len(text)) + text.encode()


def _section(section_id: int, payload: bytes) -> bytes:
    return bytes([section_id]) + _uleb(len(payload)) + payload


def _i32(n: int) -> bytes:
    return bytes([I32_CONST]) + _sleb(n)


def _get(i: int) -> bytes:
    return bytes([LOCAL_GET, i])


def _set(i: int) -> bytes:
    return bytes([LOCAL_SET, i])


def _body(locals_: bytes, code: bytes) -> bytes:
    body = locals_ + code + bytes([END])
    return _uleb(len(body)) + body


def sample_module() -> bytes:
    """The upper-casing task module (entrypoint `run`), under 200 bytes of WebAssembly."""
    # alloc: params n=0; locals p=1, pages=2
    alloc = b"".join([
        bytes([GLOBAL_GET, 0]), _set(1),
        bytes([GLOBAL_GET, 0]), _get(0), bytes([I32_ADD, GLOBAL_SET, 0]),
        bytes([GLOBAL_GET, 0]), _i32(65535), bytes([I32_ADD]), _i32(16), bytes([I32_SHR_U]), _set(2),
        _get(2), bytes([MEMORY_SIZE, 0, I32_GT_U, IF, VOID]),
        _get(2), bytes([MEMORY_SIZE, 0, I32_SUB, MEMORY_GROW, 0, DROP, END]),
        _get(1),
    ])
    # run: params p=0, n=1; locals i=2, c=3
    run = b"".join([
        bytes([BLOCK, VOID, LOOP, VOID]),
        _get(2), _get(1), bytes([I32_GE_U, BR_IF, 1]),
        _get(0), _get(2), bytes([I32_ADD, I32_LOAD8_U, 0, 0]), _set(3),
        _get(3), _i32(ord("a")), bytes([I32_SUB]), _i32(26), bytes([I32_LT_U, IF, VOID]),
        _get(0), _get(2), bytes([I32_ADD]), _get(3), _i32(32), bytes([I32_SUB, I32_STORE8, 0, 0, END]),
        _get(2), _i32(1), bytes([I32_ADD]), _set(2),
        bytes([BR, 0, END, END]),
        _get(0), bytes([I64_EXTEND_I32_U, I64_CONST]), _sleb(32), bytes([I64_SHL]),
        _get(1), bytes([I64_EXTEND_I32_U, I64_OR]),
    ])
    types = _vec([bytes([0x60, 1, I32, 1, I32]), bytes([0x60, 2, I32, I32, 1, I64])])
    functions = _vec([_uleb(0), _uleb(1)])
    memory = _vec([bytes([0x00, 1])])  # min 1 page, no maximum (the sandbox enforces the budget)
    globals_ = _vec([bytes([I32, 1]) + _i32(1024) + bytes([END])])
    exports = _vec([
        _name("memory") + bytes([0x02, 0]),
        _name("alloc") + bytes([0x00, 0]),
        _name(SAMPLE_ENTRYPOINT) + bytes([0x00, 1]),
    ])
    code = _vec([
        _body(_vec([bytes([2, I32])]), alloc),
        _body(_vec([bytes([2, I32])]), run),
    ])
    return b"".join([
        b"\x00asm", (1).to_bytes(4, "little"),
        _section(1, types), _section(3, functions), _section(5, memory),
        _section(6, globals_), _section(7, exports), _section(10, code),
    ])
