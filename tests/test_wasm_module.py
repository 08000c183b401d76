"""tasks/wasm_module.py: the outline reader and memory cap the browser sandbox relies on, checked against wasmtime."""

from __future__ import annotations

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruvector_edge.errors import ModuleRejected
from ruvector_edge.tasks import NativeSandbox
from ruvector_edge.tasks.wasm_module import MAX_PAGES, outline, require_abi, sections, with_memory_maximum

ABI = """
 (global $top (mut i32) (i32.const 1024))
 (func $alloc (export "alloc") (param $n i32) (result i32) (local $p i32)
   (local.set $p (global.get $top))
   (global.set $top (i32.add (global.get $top) (local.get $n)))
   (local.get $p))
 (func (export "sum") (param i32 i32) (result i64) (i64.const 4))
 (func (export "grow") (param i32 i32) (result i64)
   (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
   (i64.extend_i32_u (memory.size)))
 (func (export "wrong") (param i32) (result i64) (i64.const 0))
"""


def wat(memory: str = '(memory (export "memory") 1)', extra: str = "") -> bytes:
    return wasmtime.wat2wasm(f"(module {extra} {memory} {ABI} (data (i32.const 0) \"hi\") (func $f) (start $f))")


GOOD = wat()
CASES = [
    (GOOD, "sum"),
    (GOOD, "grow"),
    (GOOD, "wrong"),  # entrypoint with the wrong signature
    (GOOD, "missing"),
    (GOOD, "alloc"),
    (wat('(memory (export "memory") 1 3)'), "sum"),
    (wat('(memory (export "mem") 1)'), "sum"),  # memory not exported as "memory"
    (wat("", '(import "env" "memory" (memory 1))'), "sum"),
    (wat(extra='(import "env" "clock" (func (result i64)))'), "sum"),
    (wat(extra='(import "env" "g" (global i32))'), "sum"),
    (wasmtime.wat2wasm('(module (memory (export "memory") 1) (func (export "sum") (param i32 i32) (result i64) (i64.const 0)))'), "sum"),
    (wasmtime.wat2wasm('(module (memory (export "memory") 1) (func (export "alloc") (param i64) (result i32) (i32.const 0))'
                       ' (func (export "sum") (param i32 i32) (result i64) (i64.const 0)))'), "sum"),
    (b"\x00asm garbage", "sum"),
    (b"", "sum"),
    (GOOD[:-3], "sum"),
]


@pytest.fixture(scope="module")
def native():
    with NativeSandbox() as box:
        yield box


def native_accepts(box: NativeSandbox, module: bytes, entrypoint: str) -> bool:
    try:
        box.compile(module, entrypoint)
        return True
    except ModuleRejected:
        return False


def outline_accepts(module: bytes, entrypoint: str) -> bool:
    try:
        require_abi(outline(module), entrypoint)
        return True
    except ModuleRejected:
        return False


@pytest.mark.parametrize("index", range(len(CASES)))
def test_abi_check_agrees_with_wasmtime(native, index):
    module, entrypoint = CASES[index]
    assert outline_accepts(module, entrypoint) == native_accepts(native, module, entrypoint)


def test_refusals_use_the_native_wording():
    with pytest.raises(ModuleRejected, match="imports env.clock"):
        require_abi(outline(CASES[8][0]), "sum")
    with pytest.raises(ModuleRejected, match="export alloc"):
        require_abi(outline(CASES[10][0]), "sum")
    with pytest.raises(ModuleRejected, match="export missing"):
        require_abi(outline(GOOD), "missing")
    with pytest.raises(ModuleRejected, match="valid WebAssembly"):
        outline(b"\x00asm garbage")
    with pytest.raises(ModuleRejected, match="'memory'"):
        require_abi(outline(CASES[6][0]), "sum")


def test_outline_reads_signatures_and_limits():
    info = outline(wat('(memory (export "memory") 2 9)'))
    assert info.imports == () and info.memory_exports == ("memory",)
    assert info.func_exports["alloc"] == (("i32",), ("i32",)) and info.func_exports["wrong"] == (("i32",), ("i64",))
    assert (info.memory_min, info.memory_max) == (2, 9)
    assert (outline(GOOD).memory_min, outline(GOOD).memory_max) == (1, None)


def grown_pages(module: bytes) -> int:
    """Run `grow` in plain wasmtime (no store limit): the memory size once memory.grow first fails."""
    store = wasmtime.Store()
    exports = wasmtime.Instance(store, wasmtime.Module(store.engine, module), []).exports(store)
    return exports["grow"](store, 0, 0)


@pytest.mark.parametrize("declared, cap, expect", [("1", 5, 5), ("1 3", 5, 3), ("2 40", 7, 7), ("1", MAX_PAGES + 9, None)])
def test_memory_maximum_is_lowered_to_the_budget(declared, cap, expect):
    module = wat(f'(memory (export "memory") {declared})')
    capped = with_memory_maximum(module, cap)
    info = outline(capped)
    assert info.memory_min == outline(module).memory_min
    assert info.memory_max == (expect if expect is not None else MAX_PAGES)
    if expect is not None:
        assert grown_pages(capped) == expect
    # every other section is byte-for-byte the same
    other = lambda m: [m[s:e] for sid, _, s, e in sections(m) if sid != 5]  # noqa: E731
    assert other(capped) == other(module)


def test_memory_minimum_above_the_cap_is_refused():
    with pytest.raises(ModuleRejected, match="does not fit"):
        with_memory_maximum(wat('(memory (export "memory") 8)'), 4)


def test_module_without_memory_is_unchanged():
    module = wasmtime.wat2wasm("(module (func (export \"f\")))")
    assert with_memory_maximum(module, 3) == module and outline(module).memory_min is None


def mutations():
    return st.builds(
        lambda pos, value, cut: (GOOD[:pos] + bytes([value]) + GOOD[pos + 1 :])[: len(GOOD) - cut],
        st.integers(0, len(GOOD) - 1), st.integers(0, 255), st.integers(0, 8),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=200), st.binary(max_size=60).map(lambda b: b"\x00asm\x01\x00\x00\x00" + b), mutations()))
def test_hostile_bytes_raise_only_module_rejected(native, data):
    try:
        info = outline(data)
    except ModuleRejected:
        return
    # what the outline reader accepts and wasmtime compiles stays valid once its memory is capped
    if native_accepts(native, data, "sum") and info.memory_min is not None and info.memory_min <= 16:
        capped = with_memory_maximum(data, 16)
        assert native_accepts(native, capped, "sum")
        assert outline_accepts(data, "sum")
