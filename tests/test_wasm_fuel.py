"""tasks/wasm_fuel.py: the instrumented module computes what the original does and counts the fuel wasmtime counts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruvector_edge.errors import ModuleRejected
from ruvector_edge.tasks import Budgets, NativeSandbox, TaskStatus
from ruvector_edge.tasks.wasm_fuel import EXHAUSTED, FUEL_EXPORT, instrument
from ruvector_edge.tasks.wasm_module import outline, sections

sys.path.insert(0, str(Path(__file__).parent))
from test_tasks import GOOD_WAT  # noqa: E402  (the task tests' own module)

GOOD = wasmtime.wat2wasm(GOOD_WAT)

# Every control construct the meter segments code at, and the operator families it decodes.
FEATURES = wasmtime.wat2wasm("""(module
 (type $bin (func (param i32 i32) (result i32)))
 (memory (export "memory") 1 4)
 (table 2 funcref)
 (elem (i32.const 0) $add $mul)
 (global $top (mut i32) (i32.const 2048))
 (global $started (mut i32) (i32.const 0))
 (data (i32.const 100) "abcdefgh")
 (func $init (global.set $started (i32.const 7)))
 (start $init)
 (func $alloc (export "alloc") (param $n i32) (result i32) (local $p i32)
   (local.set $p (global.get $top)) (global.set $top (i32.add (global.get $top) (local.get $n))) (local.get $p))
 (func $add (type $bin) (i32.add (local.get 0) (local.get 1)))
 (func $mul (type $bin) (i32.mul (local.get 0) (local.get 1)))
 (func $fact (param $n i64) (result i64)
   (if (result i64) (i64.le_u (local.get $n) (i64.const 1))
     (then (i64.const 1))
     (else (i64.mul (local.get $n) (call $fact (i64.sub (local.get $n) (i64.const 1)))))))
 (func $classify (param $x i32) (result i32)
   (block $c (block $b (block $a
     (br_table $a $b $c (local.get $x)))
     (return (i32.const 10)))
   (return (i32.const 20)))
   (i32.const 30))
 (func $pair (param $x i32) (result i32 i32) (local.get $x) (i32.add (local.get $x) (i32.const 1)))
 (func (export "mix") (param $p i32) (param $n i32) (result i64)
   (local $i i32) (local $j i32) (local $acc i32) (local $o i32) (local $f f64)
   (block $done (loop $outer
     (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
     (local.set $j (i32.const 0))
     (loop $inner
       (local.set $acc (call_indirect (type $bin)
         (local.get $acc) (i32.load8_u (i32.add (local.get $p) (local.get $i)))
         (i32.and (local.get $j) (i32.const 1))))
       (local.set $j (i32.add (local.get $j) (i32.const 1)))
       (br_if $inner (i32.lt_u (local.get $j) (i32.const 3))))
     (if (i32.and (local.get $i) (i32.const 1))
       (then (local.set $acc (i32.add (local.get $acc) (call $classify (i32.rem_u (local.get $i) (i32.const 4))))))
       (else (nop) (drop (i32.const 5))))
     (local.set $acc (select (local.get $acc) (i32.const 0) (i32.const 1)))
     (local.set $acc (select (result i32) (local.get $acc) (i32.const 1) (local.get $i)))
     (local.set $i (i32.add (local.get $i) (i32.const 1)))
     (br $outer)))
   (local.get $acc)
   (block (param i32) (result i32) (i32.const 3) (i32.add))
   (local.set $acc)
   (call $pair (local.get $acc))
   (i32.add)
   (local.set $acc)
   (local.set $f (f64.add (f64.const 1.5) (f64.convert_i32_u (local.get $acc))))
   (local.set $acc (i32.add (local.get $acc) (i32.trunc_sat_f64_u (local.get $f))))
   (local.set $acc (i32.add (local.get $acc) (i32.extend8_s (i32.const 0x80))))
   (local.set $acc (i32.add (local.get $acc) (i32.wrap_i64 (call $fact (i64.const 10)))))
   (local.set $acc (i32.add (local.get $acc) (i32.reinterpret_f32 (f32.const 0.25))))
   (local.set $o (call $alloc (i32.const 16)))
   (memory.fill (local.get $o) (i32.const 0) (i32.const 16))
   (drop (memory.grow (i32.const 1)))
   (drop (memory.grow (local.get $n)))
   (memory.copy (i32.add (local.get $o) (i32.const 8)) (i32.const 100) (i32.const 8))
   (i32.store (local.get $o) (local.get $acc))
   (i32.store (i32.add (local.get $o) (i32.const 4)) (i32.add (global.get $started) (i32.wrap_i64 (i64.extend_i32_u (memory.size)))))
   (i64.or (i64.shl (i64.extend_i32_u (local.get $o)) (i64.const 32)) (i64.const 16)))
)""")


def run_metered(module: bytes, entrypoint: str, data: bytes, limit: int):
    """Run the instrumented module in plain wasmtime (no engine fuel): (status, output, fuel used by its own count)."""
    metered, why = instrument(module, limit)
    assert metered is not None, why
    store = wasmtime.Store()
    exports = wasmtime.Instance(store, wasmtime.Module(store.engine, metered.module), []).exports(store)
    fuel = exports[metered.fuel_export]
    try:
        if metered.start_export:
            exports[metered.start_export](store)
        ptr = exports["alloc"](store, len(data))
        exports["memory"].write(store, data, ptr)
        packed = exports[entrypoint](store, ptr, len(data)) & 0xFFFFFFFFFFFFFFFF
    except wasmtime.Trap:
        left = fuel.value(store)
        return (TaskStatus.FUEL_EXHAUSTED if left == EXHAUSTED else TaskStatus.ERROR), b"", min(limit, limit - left)
    out = exports["memory"].read(store, packed >> 32, (packed >> 32) + (packed & 0xFFFFFFFF))
    return TaskStatus.SUCCESS, bytes(out), min(limit, limit - fuel.value(store))


@pytest.fixture(scope="module")
def native():
    with NativeSandbox() as box:
        yield box


@pytest.mark.parametrize("module, entrypoint, data", [
    (GOOD, "sum", bytes(range(10))),
    (GOOD, "sum", bytes(range(256)) * 4),
    (GOOD, "reverse", b"hello world"),
    (GOOD, "reverse", b""),
    (FEATURES, "mix", b""),
    (FEATURES, "mix", bytes(range(1, 40))),
])
def test_metered_run_matches_wasmtime_output_and_fuel(native, module, entrypoint, data):
    expected = native.run(module, entrypoint, data, Budgets(10**9, 4, 5_000))
    assert expected.status is TaskStatus.SUCCESS
    status, output, used = run_metered(module, entrypoint, data, 10**9)
    assert (status, output, used) == (TaskStatus.SUCCESS, expected.output, expected.fuel_used)


def test_infinite_loop_exhausts_the_counter(native):
    status, output, used = run_metered(GOOD, "spin", b"", 100_000)
    assert status is TaskStatus.FUEL_EXHAUSTED and output == b"" and used == 100_000
    assert native.run(GOOD, "spin", b"", Budgets(100_000, 1, 10_000)).status is TaskStatus.FUEL_EXHAUSTED


def test_a_budget_too_small_for_the_work_exhausts_like_wasmtime(native):
    data = bytes(range(200))
    needed = native.run(GOOD, "sum", data, Budgets(10**9, 2, 5_000)).fuel_used
    for limit in (needed // 2, needed - 200):
        assert run_metered(GOOD, "sum", data, limit)[0] is TaskStatus.FUEL_EXHAUSTED
        assert native.run(GOOD, "sum", data, Budgets(limit, 2, 5_000)).status is TaskStatus.FUEL_EXHAUSTED
    assert run_metered(GOOD, "sum", data, needed)[0] is TaskStatus.SUCCESS


@pytest.mark.parametrize("entrypoint, data", [("sum", b""), ("sum", bytes(range(5))), ("reverse", b"abc")])
def test_status_and_fuel_agree_with_wasmtime_at_every_limit(native, entrypoint, data):
    needed = native.run(GOOD, entrypoint, data, Budgets(10**9, 2, 5_000)).fuel_used
    for limit in range(1, needed + 3):
        expected = native.run(GOOD, entrypoint, data, Budgets(limit, 2, 5_000))
        status, output, used = run_metered(GOOD, entrypoint, data, limit)
        assert (limit, status, output, used) == (limit, expected.status, expected.output, expected.fuel_used)


def test_traps_stay_errors_with_fuel_left():
    status, _, used = run_metered(GOOD, "divzero", b"", 10**6)
    assert status is TaskStatus.ERROR and 0 < used < 10**6


def test_fuel_export_name_avoids_the_modules_own_exports():
    taken = wasmtime.wat2wasm(f'(module (global (export "{FUEL_EXPORT}") i32 (i32.const 1)) (func (export "f")))')
    metered, _ = instrument(taken, 5)
    assert metered.fuel_export == FUEL_EXPORT + "_"
    store = wasmtime.Store()
    exports = wasmtime.Instance(store, wasmtime.Module(store.engine, metered.module), []).exports(store)
    exports["f"](store)
    assert exports[metered.fuel_export].value(store) == 4 and exports[FUEL_EXPORT].value(store) == 1


def test_module_without_globals_or_exports_gets_both_sections_and_start_is_metered():
    config = wasmtime.Config()
    config.consume_fuel = True
    engine = wasmtime.Engine(config)
    for text in ("(module)", "(module (func $f (loop)) (start $f))", "(module (memory 1))",
                 "(module (func $f (drop (i32.add (i32.const 1) (i32.const 2)))) (start $f))"):
        module = wasmtime.wat2wasm(text)
        metered, why = instrument(module, 100)
        assert metered is not None, why
        store = wasmtime.Store()
        exports = wasmtime.Instance(store, wasmtime.Module(store.engine, metered.module), []).exports(store)
        if metered.start_export:
            exports[metered.start_export](store)
        charged = wasmtime.Store(engine)
        charged.set_fuel(100)
        wasmtime.Instance(charged, wasmtime.Module(engine, module), [])
        assert exports[FUEL_EXPORT].value(store) == charged.get_fuel()


def test_unknown_operators_are_left_unmetered_with_a_reason():
    simd = wasmtime.wat2wasm('(module (func (export "f") (result i32) (i32x4.extract_lane 0 (v128.const i32x4 1 2 3 4))))')
    metered, why = instrument(simd, 10)
    assert metered is None and "0xfd" in why
    imports = wasmtime.wat2wasm('(module (import "env" "f" (func)))')
    assert instrument(imports, 10) == (None, "modules with imports are not metered")


def native_valid(module: bytes) -> bool:
    try:
        wasmtime.Module.validate(wasmtime.Engine(), module)
        return True
    except wasmtime.WasmtimeError:
        return False


def mutations(base: bytes):
    return st.builds(
        lambda pos, value, cut: (base[:pos] + bytes([value]) + base[pos + 1 :])[: len(base) - cut],
        st.integers(8, len(base) - 1), st.integers(0, 255), st.integers(0, 4),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutations(GOOD), mutations(FEATURES), st.binary(max_size=80).map(lambda b: b"\x00asm\x01\x00\x00\x00" + b)))
def test_hostile_bytes_raise_only_module_rejected_and_valid_stays_valid(data):
    try:
        metered, why = instrument(data, 1000)
    except ModuleRejected:
        return
    if metered is not None and native_valid(data):
        assert native_valid(metered.module)
        assert FUEL_EXPORT in metered.fuel_export and outline(metered.module).imports == ()


def test_fuel_running_out_in_a_start_function_is_fuel_exhausted(native):
    looping = wasmtime.wat2wasm(GOOD_WAT.replace('(memory (export "memory") 1)', '(memory (export "memory") 1) (func $forever (loop $l (br $l))) (start $forever)'))
    assert native.run(looping, "sum", b"", Budgets(50_000, 1, 10_000)).status is TaskStatus.FUEL_EXHAUSTED
    assert run_metered(looping, "sum", b"", 50_000)[0] is TaskStatus.FUEL_EXHAUSTED
    metered, _ = instrument(looping, 50_000)
    assert not any(sid == 8 for sid, *_ in sections(metered.module))  # the host calls it: no start section left
