"""TensorCodec container, levels, limits and the adaptive chooser."""

from __future__ import annotations

import hashlib
import struct
import zlib

import lz4.block
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ruvector_edge.compression import (
    AdaptiveCodec,
    CompressionLevel,
    LevelProfile,
    Limits,
    LinkEstimate,
    LinkMeter,
    NativeLz4Codec,
    TensorCodec,
    choose_level,
)
from ruvector_edge.compression.blocking import RULES
from ruvector_edge.compression.container import HEADER_SIZE
from ruvector_edge.errors import (
    ChecksumMismatch,
    InvalidCodecConfig,
    InvalidTensor,
    MalformedMessage,
    OversizedMessage,
    RejectedInput,
)

L = CompressionLevel
LOSSLESS = [L.NONE, L.FAST, L.HIGH]
LOSSY = [L.QUANTIZED8, L.QUANTIZED4]
STEPS = {L.QUANTIZED8: 255, L.QUANTIZED4: 15}
HEAD = struct.Struct("<4sBBBBBBBBIQQ")

shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9)
any_f32 = hnp.arrays(np.float32, shapes, elements=st.floats(width=32))
finite_f32 = hnp.arrays(np.float32, shapes, elements=st.floats(-1e4, 1e4, width=32))


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32)


def recrc(blob: bytes) -> bytes:
    body = blob[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def container(level: int, dtype: int, packing: int, raw_len: int, payload: bytes, shape=(), flags=0, params=0, block=0) -> bytes:
    head = HEAD.pack(b"RVTC", 1, level, dtype, packing, flags, params, len(shape), 0, block, raw_len, len(payload))
    body = head + struct.pack(f"<{len(shape)}Q", *shape) + payload
    return body + struct.pack("<I", zlib.crc32(body))


# Round trips ---------------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(a=any_f32, level=st.sampled_from(LOSSLESS))
def test_lossless_levels_round_trip_bit_for_bit(a, level):
    codec = TensorCodec.with_level(level)
    back = codec.decompress_tensor(codec.compress_tensor(a))
    assert back.dtype == np.float32 and back.shape == a.shape
    assert np.array_equal(bits(back), bits(np.array(a, order="C")))


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=5000), level=st.sampled_from(list(L)))
def test_bytes_round_trip_at_every_level(data, level):
    codec = TensorCodec.with_level(level)
    assert codec.decompress(codec.compress(data)) == data


@settings(max_examples=200, deadline=None)
@given(a=finite_f32, level=st.sampled_from(LOSSY), block=st.integers(1, 300))
def test_quantized_error_is_at_most_half_a_step_per_block(a, level, block):
    codec = TensorCodec.with_level(level, block_size=block)
    back = codec.decompress_tensor(codec.compress_tensor(a))
    assert back.shape == a.shape and back.dtype == np.float32
    flat, out = a.reshape(-1).astype(np.float64), back.reshape(-1).astype(np.float64)
    levels = 255 if level is L.QUANTIZED8 else 15
    for start in range(0, flat.size, block):
        x, y = flat[start : start + block], out[start : start + block]
        step = (x.max() - x.min()) / levels
        # half a step, plus float16/float32 rounding of the parameters and of the arithmetic
        assert np.abs(x - y).max() <= 0.5 * step * 1.01 + 1e-3 * step + 4e-7 * np.abs(x).max() + 1e-30


def test_quantized_meets_ratio_and_error_targets_on_gaussian_data():
    x = np.random.default_rng(7).standard_normal(1 << 18).astype(np.float32)
    for level, min_ratio, max_err in ((L.QUANTIZED8, 4.0, 0.01), (L.QUANTIZED4, 7.0, 0.10)):
        codec = TensorCodec.with_level(level)
        blob = codec.compress_tensor(x)
        back = codec.decompress_tensor(blob)
        assert x.nbytes / len(blob) >= min_ratio
        assert np.sqrt(np.mean((back - x) ** 2)) / np.sqrt(np.mean(x**2)) <= max_err


def heavy_tailed(kind: str, n: int = 1 << 18, seed: int = 17) -> np.ndarray:
    """Seeded corpora like bench/compression.py's: trained weights are closer to Laplace than to Gaussian."""
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal(n).astype(np.float32)
    if kind == "lowrank":  # a product of two random rank-16 factors plus noise, like a trained weight matrix
        side = int(np.sqrt(n))
        w = rng.standard_normal((side, 16)) @ rng.standard_normal((16, side)) / 4 + 0.1 * rng.standard_normal((side, side))
        return w.astype(np.float32).reshape(-1)
    x = rng.laplace(0, 1, n).astype(np.float32)
    if kind == "outliers":  # a few dozen values 20-100 standard deviations out
        at = rng.choice(n, 48, replace=False)
        x[at] = rng.choice([-1, 1], 48) * rng.uniform(20, 100, 48) * x.std()
    return x


def rel_rms(x: np.ndarray, y: np.ndarray) -> float:
    x64 = x.astype(np.float64)
    return float(np.sqrt(np.mean((y - x64) ** 2) / np.mean(x64**2)))


@pytest.mark.parametrize("kind", ["gaussian", "laplace", "outliers", "lowrank"])
def test_quantized8_keeps_4x_at_1_percent_on_heavy_tailed_and_low_rank_tensors(kind):
    """Issue 17: with one 1,024-value block size, Laplace data missed the 1% budget (1.1%) and outliers made it 1.9%."""
    x = heavy_tailed(kind)
    codec = TensorCodec.with_level(L.QUANTIZED8)
    blob = codec.compress_tensor(x)
    back = codec.decompress_tensor(blob)
    assert x.nbytes / len(blob) >= 4.0
    assert rel_rms(x, back) <= 0.01


@pytest.mark.parametrize("kind", ["gaussian", "laplace", "outliers", "lowrank"])
def test_quantized4_stays_within_10_percent_on_heavy_tailed_and_low_rank_tensors(kind):
    """With one 64-value block size, Laplace data missed Quantized4's 10% budget (11.1%) and outliers made it 12.6%.

    The ratio floors are what the budget allows: 32-value blocks for Laplace tails (64 gives 11%), 64 for Gaussian ones.
    """
    x = heavy_tailed(kind)
    codec = TensorCodec.with_level(L.QUANTIZED4)
    blob = codec.compress_tensor(x)
    back = codec.decompress_tensor(blob)
    assert rel_rms(x, back) <= 0.10
    assert x.nbytes / len(blob) >= (7.0 if kind in ("gaussian", "lowrank") else 6.5)


@pytest.mark.parametrize("level", LOSSY)
def test_planned_levels_send_outliers_exactly_and_pick_blocks_by_tail_weight(level):
    codec = TensorCodec.with_level(level)
    blocks = {}
    for kind in ("gaussian", "laplace", "outliers"):
        blob = codec.compress_tensor(heavy_tailed(kind))
        blocks[kind] = (struct.unpack_from("<I", blob, 12)[0], blob[8])
    assert blocks["gaussian"][0] > blocks["laplace"][0]  # lighter tails, wider blocks within the same budget
    assert blocks["outliers"][1] == 2
    if level is L.QUANTIZED8:  # 128-value cells see only real outliers; 16-value ones a few far Laplace tails too
        assert blocks["gaussian"][1] == blocks["laplace"][1] == 0
    x = heavy_tailed("outliers")
    far = np.flatnonzero(np.abs(x) > 20 * x.std())
    back = codec.decompress_tensor(codec.compress_tensor(x))
    exact = bits(back[far]) == bits(x[far])
    assert far.size >= 40 and exact.sum() >= 40  # the nearest few may stay in their block


@pytest.mark.parametrize("level", LOSSY)
def test_outliers_in_neighbouring_cells_are_both_sent_exactly(level):
    """Each widens its cell, so each cell's wider neighbour is the other: the cells two away are the reference."""
    cell = RULES[STEPS[level]].cell
    x = np.random.default_rng(9).laplace(0, 1, 8192).astype(np.float32)
    at = [40 * cell + 3, 41 * cell + 5]
    x[at] = [60.0, -75.0]
    blob = TensorCodec.with_level(level).compress_tensor(x)
    k = struct.unpack_from("<I", blob, HEADER_SIZE + 8)[0] if blob[8] & 2 else 0
    assert set(at) <= set(struct.unpack_from(f"<{k}I", blob, HEADER_SIZE + 12))
    assert TensorCodec().decompress_tensor(blob)[at].tolist() == [60.0, -75.0]


@pytest.mark.parametrize("level, block", [(L.QUANTIZED8, 1024), (L.QUANTIZED4, 64)])
def test_an_explicit_block_size_is_kept_and_sends_no_outliers(level, block):
    blob = TensorCodec.with_level(level, block_size=block).compress_tensor(heavy_tailed("outliers"))
    assert struct.unpack_from("<I", blob, 12)[0] == block and blob[8] == 0


@pytest.mark.parametrize("level", LOSSY)
@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 127, 128, 129, 300, 5000])
def test_planned_block_sizes_are_candidates_on_any_length(level, n):
    x = heavy_tailed("laplace", n=n)
    codec = TensorCodec.with_level(level)
    blob = codec.compress_tensor(x)
    assert struct.unpack_from("<I", blob, 12)[0] in RULES[STEPS[level]].candidates
    assert codec.decompress_tensor(blob).shape == (n,)


@settings(max_examples=100, deadline=None)
@given(
    x=hnp.arrays(np.float32, st.integers(1, 3000), elements=st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, -3.0])),
    cell=st.sampled_from([16, 128]),
)
def test_cell_extremes_are_reduceats_bits_signed_zeros_included(x, cell):
    """16-value cells are reduced by pairwise halving for speed: the same bits as reduceat, the JS port's reference."""
    from ruvector_edge.compression.blocking import _cells

    mins, maxs = _cells(x, cell)
    starts = np.arange(0, x.size, cell)
    assert np.array_equal(bits(mins), bits(np.minimum.reduceat(x, starts)))
    assert np.array_equal(bits(maxs), bits(np.maximum.reduceat(x, starts)))


@st.composite
def natural_tensors(draw) -> np.ndarray:
    """Continuous data at any scale, with as many outliers 20-100 standard deviations out as the side channel holds.

    The error model (step²/12 per value) holds for continuous values: data on a lattice of half steps
    can err by step/2 everywhere, which no block size prevents. At least 4,096 values, so the measured
    error is an average and not a handful of roundings. Outliers land anywhere, close ones and
    Student-t tails included, so some stay in their blocks: the plan must count what those cost.
    """
    shape = draw(st.sampled_from([(4096,), (64, 64), (5000,), (3, 71, 29), (128, 257), (16, 16, 33), (20000,)]))
    kind = draw(st.sampled_from(["gaussian", "laplace", "lowrank", "student3"]))
    scale = 10.0 ** draw(st.floats(-30, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = int(np.prod(shape))
    if kind == "gaussian":
        x = rng.standard_normal(n)
    elif kind == "laplace":
        x = rng.laplace(0, 1, n)
    elif kind == "student3":  # heavier tails than Laplace
        x = rng.standard_t(3, n)
    else:
        rows = -(-n // 64)
        x = (rng.standard_normal((rows, 4)) @ rng.standard_normal((4, 64)) + 0.1 * rng.standard_normal((rows, 64))).reshape(-1)[:n]
    k = draw(st.integers(0, n // 256))
    at = rng.choice(n, k, replace=False)
    x[at] = rng.choice([-1, 1], k) * rng.uniform(20, 100, k) * x.std()
    return (x * scale).astype(np.float32).reshape(shape)


@settings(max_examples=80, deadline=None)
@given(x=natural_tensors())
def test_quantized4_keeps_its_budget_on_any_shape_scale_and_outlier_count(x):
    codec = TensorCodec.with_level(L.QUANTIZED4)
    blob = codec.compress_tensor(x)
    back = codec.decompress_tensor(blob)
    assert back.shape == x.shape
    assert rel_rms(x.reshape(-1), back.reshape(-1)) <= 0.10
    assert codec.compress_tensor(x) == blob  # the plan and the codes depend on the values only
    assert np.array_equal(bits(TensorCodec().decompress_tensor(blob)), bits(back))


# A Quantized8 container made before block sizes were planned (fixed 1,024, no outlier flag): it still decodes.
OLD_Q8 = bytes.fromhex(
    "52565443010301000001020000040000b004000000000000300100000000000014000000000000000f00000000000000afc4"
    "c1288a677197ff5c4c63756183855482007ccf978473667b6ea3676e986d6d4a7c6da76f937d7cc6a94c6b63ab81769c748a"
    "692c8c73746e6c82737a667e837978b93f737f843c6a420e7279a01d8d7c835d977779826d7a5b8c536e685a8165916ec882"
    "4f866777666f857e27ae6b7d5977946a9e8586ab7f5c8787975968b482667a785a8441456c7682ab695e5b4a5f68bba35c94"
    "098971756982b39b997fce9d86a74f68ac634e778d8480909c29a984a47e735b8f589c62498a7f63396fa27693e199e07dbd"
    "65648bc78782a16ea5456798829c77368388588590c489838878807b8187889e616972b58759718c6691b6b37d74625d469a"
    "746ba45c5b6d9c5866b2a38b5c8df58b808ea9798c85857c770e997f866e80367d7f706e8653596474c99f7b8b79948c1884"
    "6cb1bcd05b00"
)


# A Quantized4 container made before its block size was planned (fixed 64, no outlier flag, a 40.0 spike kept in its block).
OLD_Q4 = bytes.fromhex(
    "52565443010401000001020040000000f4020000000000006b0000000000000009000000000000001500000000000000cac24cc3"
    "dcc1ac37d241c438f6967a677466557976885b66507778586464872a8c4f7669677787868447367611112111111111211121121111"
    "f2111211111212103111112121111121111001666865263049474657794a6456434f54325684642662335778264553965507483f"
    "9a04"
)


def test_containers_from_before_the_plan_still_decode():
    back = TensorCodec().decompress_tensor(OLD_Q8)
    assert back.shape == (20, 15) and struct.unpack_from("<I", OLD_Q8, 12)[0] == 1024
    assert hashlib.sha256(back.tobytes()).hexdigest() == "b62f604265238457eec2d2735e816005f64b135e6f966915243d91a60d64f94e"
    back = TensorCodec().decompress_tensor(OLD_Q4)
    assert back.shape == (9, 21) and struct.unpack_from("<I", OLD_Q4, 12)[0] == 64 and OLD_Q4[8] == 0
    assert hashlib.sha256(back.tobytes()).hexdigest() == "37366e1cd2ca31fc7328aaabc780b1b6e5bd234900386389d6a51e3858be8f18"


def test_large_values_fall_back_to_float32_parameters():
    x = (np.arange(1000, dtype=np.float32) * 1e3 + 1e7).reshape(10, 100)
    codec = TensorCodec.with_level(L.QUANTIZED8, block_size=100)
    blob = codec.compress_tensor(x)
    assert blob[9] == 2  # parameter dtype float32
    assert np.abs(codec.decompress_tensor(blob) - x).max() <= 99e3 / 255 / 2 * 1.01


def test_constant_blocks_are_exact():
    x = np.full(1000, 0.1, np.float32)
    for level in LOSSY:
        assert np.array_equal(TensorCodec.with_level(level).decompress_tensor(TensorCodec.with_level(level).compress_tensor(x)), x)


def test_lists_scalars_and_empty_tensors():
    exact = TensorCodec.with_level(L.NONE)
    assert exact.decompress_tensor(exact.compress_tensor([[1, 2], [3, 4.5]])).tolist() == [[1, 2], [3, 4.5]]
    codec = TensorCodec.with_level(L.QUANTIZED4)
    assert np.allclose(codec.decompress_tensor(codec.compress_tensor([[1, 2], [3, 4]])), [[1, 2], [3, 4]], atol=2e-3)
    assert codec.decompress_tensor(codec.compress_tensor(3.0)).shape == ()
    assert codec.decompress_tensor(codec.compress_tensor(np.zeros((0, 5)))).shape == (0, 5)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_parallel_huffman_deflate_is_one_stream_any_inflater_reads(threads):
    data = np.random.default_rng(threads).integers(0, 40, 600_000, dtype=np.uint8).tobytes()
    stream = NativeLz4Codec(threads=threads).deflate(data, huffman_only=True)
    assert zlib.decompress(stream, -15) == data
    x = np.random.default_rng(0).standard_normal(1 << 20).astype(np.float32)
    for level in (L.HIGH, L.QUANTIZED8, L.QUANTIZED4):
        one = TensorCodec(level, codec=NativeLz4Codec(threads=1))
        many = TensorCodec(level, codec=NativeLz4Codec(threads=threads))
        assert np.array_equal(one.decompress_tensor(many.compress_tensor(x)), one.decompress_tensor(one.compress_tensor(x)))


def test_fast_payload_is_a_size_prefixed_lz4_block():
    """The wire format npm lz4-wasm reads: Python's lz4.block with store_size=True."""
    x = np.tile(np.arange(64, dtype=np.float32), 100)
    blob = TensorCodec.with_level(L.FAST).compress_tensor(x)
    assert blob[7] == 1
    payload = blob[HEADER_SIZE + 8 : -4]
    assert lz4.block.decompress(payload) == x.tobytes()


def test_header_layout_is_pinned():
    blob = TensorCodec.with_level(L.NONE).compress_tensor(np.array([1.0, 2.0], np.float32))
    assert blob == container(0, 1, 0, 8, np.array([1.0, 2.0], "<f4").tobytes(), shape=(2,))


@pytest.mark.parametrize("bad", [{"tensor": "abc"}, ["a", "b"], [[1, 2], [3]], np.array([1 + 2j])])
def test_non_numeric_tensors_are_refused(bad):
    with pytest.raises(InvalidTensor):
        TensorCodec.with_level(L.FAST).compress_tensor(bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_lossy_levels_refuse_non_finite_values(value):
    with pytest.raises(InvalidTensor):
        TensorCodec.with_level(L.QUANTIZED8).compress_tensor([1.0, value])


def test_bad_configuration():
    with pytest.raises(InvalidCodecConfig):
        TensorCodec.with_level(L.QUANTIZED8, block_size=0)
    with pytest.raises(InvalidCodecConfig):
        TensorCodec.with_level(L.FAST, block_size=64)


# Hostile input ---------------------------------------------------------------------------------

OUTLIER_X = np.random.default_rng(4).laplace(0, 1, 4096).astype(np.float32)
OUTLIER_X[[100, 1000, 3000]] = [90.0, -70.0, 55.0]
OUTLIER_BLOBS = {level: TensorCodec.with_level(level).compress_tensor(OUTLIER_X) for level in LOSSY}


def _samples() -> list[tuple[bytes, bool]]:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((33, 7)).astype(np.float32)
    out = [(TensorCodec.with_level(lv).compress_tensor(x), True) for lv in L] + [(b, True) for b in OUTLIER_BLOBS.values()]
    out += [(TensorCodec.with_level(lv).compress(b"spam and eggs " * 40), False) for lv in LOSSLESS]
    return out


SAMPLES = _samples()


def _decode(blob: bytes, tensor: bool, limits: Limits | None = None):
    codec = TensorCodec(limits=limits)
    return codec.decompress_tensor(blob) if tensor else codec.decompress(blob)


@settings(max_examples=400, deadline=None)
@given(which=st.integers(0, len(SAMPLES) - 1), pos=st.integers(0, 10_000), xor=st.integers(1, 255))
def test_any_flipped_byte_is_a_typed_rejection(which, pos, xor):
    blob, tensor = SAMPLES[which]
    mutated = bytearray(blob)
    mutated[pos % len(blob)] ^= xor
    with pytest.raises(RejectedInput):
        _decode(bytes(mutated), tensor)


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, len(SAMPLES) - 1), cut=st.integers(0, 10_000))
def test_truncated_or_extended_input_is_a_typed_rejection(which, cut):
    blob, tensor = SAMPLES[which]
    with pytest.raises(RejectedInput):
        _decode(blob[: cut % len(blob)], tensor)
    with pytest.raises(RejectedInput):
        _decode(blob + b"\0", tensor)


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, len(SAMPLES) - 1), pos=st.integers(4, 10_000), xor=st.integers(1, 255))
def test_mutations_that_keep_a_valid_checksum_are_still_rejected_or_decoded_safely(which, pos, xor):
    """An attacker can recompute CRC32: structure checks must hold on their own."""
    blob, tensor = SAMPLES[which]
    mutated = bytearray(blob)
    mutated[pos % (len(blob) - 4)] ^= xor
    try:
        out = _decode(recrc(bytes(mutated)), tensor, Limits(max_decompressed_bytes=1 << 16))
    except RejectedInput:
        return
    if tensor:
        assert out.dtype == np.float32 and out.nbytes <= 1 << 16


def test_wrong_magic_and_version():
    blob = SAMPLES[0][0]
    with pytest.raises(MalformedMessage, match="magic"):
        _decode(recrc(b"XXXX" + blob[4:]), True)
    with pytest.raises(MalformedMessage, match="version"):
        _decode(recrc(blob[:4] + b"\x02" + blob[5:]), True)


def test_bad_checksum_is_its_own_error():
    blob = bytearray(SAMPLES[0][0])
    blob[-1] ^= 1
    with pytest.raises(ChecksumMismatch):
        _decode(bytes(blob), True)


def test_shape_times_dtype_must_match_the_declared_length():
    with pytest.raises(MalformedMessage, match="shape"):
        _decode(container(0, 1, 0, 8, b"\0" * 8, shape=(3,)), True)


def test_declared_size_over_the_limit_is_refused_before_decoding():
    bomb = container(1, 0, 1, 1 << 40, struct.pack("<I", 0xFFFFFFFF) + b"\0" * 16)
    with pytest.raises(OversizedMessage):
        _decode(bomb, False)


def test_lz4_size_prefix_is_checked_before_decompressing():
    payload = struct.pack("<I", 1 << 30) + lz4.block.compress(b"a" * 100, store_size=False)
    with pytest.raises(OversizedMessage):
        _decode(container(1, 0, 1, 100, payload), False)
    payload = struct.pack("<I", 50) + lz4.block.compress(b"a" * 100, store_size=False)
    with pytest.raises(MalformedMessage, match="declares"):
        _decode(container(1, 0, 1, 100, payload), False)


def test_deflate_bomb_stops_at_the_declared_size():
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = z.compress(b"\0" * (50 << 20)) + z.flush()
    with pytest.raises(MalformedMessage):
        _decode(container(2, 0, 2, 1000, stream), False)


def test_oversized_message_and_output_limits():
    with pytest.raises(OversizedMessage):
        _decode(SAMPLES[0][0], True, Limits(max_message_bytes=64))
    with pytest.raises(OversizedMessage):
        TensorCodec(limits=Limits(max_decompressed_bytes=100)).compress_tensor(np.zeros(100))


def test_non_finite_quantization_parameters_are_rejected():
    blob = TensorCodec.with_level(L.QUANTIZED8, block_size=256).compress_tensor(np.linspace(0, 1, 256, dtype=np.float32))
    params_at = HEADER_SIZE + 8
    mutated = bytearray(blob)
    mutated[params_at : params_at + 4] = struct.pack("<f", np.nan) if blob[9] == 2 else struct.pack("<e", np.nan) + mutated[params_at + 2 : params_at + 4]
    with pytest.raises(MalformedMessage, match="finite"):
        _decode(recrc(bytes(mutated)), True)


def _split_outliers(blob: bytes) -> tuple[tuple, bytes]:
    """The header fields (for `container`) and the payload after the outlier section."""
    _, _, level, dtype, packing, flags, params, ndim, _, block, raw_len, _ = HEAD.unpack_from(blob)
    payload = blob[HEADER_SIZE + 8 * ndim : -4]
    k = struct.unpack_from("<I", payload)[0]
    shape = struct.unpack_from(f"<{ndim}Q", blob, HEADER_SIZE)
    return (level, dtype, packing, raw_len, shape, flags, params, block), payload[4 + 8 * k :]


def _rebuild(fields: tuple, section: bytes, rest: bytes, flags: int | None = None) -> bytes:
    level, dtype, packing, raw_len, shape, old_flags, params, block = fields
    return container(level, dtype, packing, raw_len, section + rest, shape, old_flags if flags is None else flags, params, block)


def _section(index, values) -> bytes:
    return struct.pack(f"<I{len(index)}I{len(values)}f", len(index), *index, *values)


@pytest.mark.parametrize("level", LOSSY)
def test_outlier_sample_is_what_the_fuzzers_mutate(level):
    blob = OUTLIER_BLOBS[level]
    assert blob[5] == level and blob[8] == 2
    back = TensorCodec().decompress_tensor(blob)
    assert back[[100, 1000, 3000]].tolist() == [90.0, -70.0, 55.0]
    fields, rest = _split_outliers(blob)
    assert _rebuild(fields, _section([100, 1000, 3000], [90.0, -70.0, 55.0]), rest) == blob


@pytest.mark.parametrize(
    "section, match",
    [
        (struct.pack("<I", 0), "outliers"),  # a flag with no outliers
        (_section(range(17), [1.0] * 17), "outliers"),  # 4096 values allow at most 16
        (_section([5, 5], [1.0, 2.0]), "increase"),
        (_section([9, 5], [1.0, 2.0]), "increase"),
        (_section([4096], [1.0]), "below"),
        (_section([0xFFFFFFFF], [1.0]), "below"),
        (_section([3], [float("nan")]), "finite"),
        (_section([3], [float("inf")]), "finite"),
        (struct.pack("<I", 0xFFFFFFFF), "outliers"),  # a count to allocate 32 GiB for
    ],
)
@pytest.mark.parametrize("level", LOSSY)
def test_bad_outlier_sections_are_rejected(section, match, level):
    fields, rest = _split_outliers(OUTLIER_BLOBS[level])
    with pytest.raises(MalformedMessage, match=match):
        TensorCodec().decompress_tensor(_rebuild(fields, section, rest))


@pytest.mark.parametrize("level", LOSSY)
def test_outlier_flag_only_on_quantized_levels_and_never_without_its_section(level):
    fields, rest = _split_outliers(OUTLIER_BLOBS[level])
    for payload in (b"\x01\x00", struct.pack("<II", 2, 3)):
        with pytest.raises(MalformedMessage, match="shorter"):
            TensorCodec().decompress_tensor(_rebuild(fields, payload, b""))
    with pytest.raises(MalformedMessage):  # the flag with the section missing: the parameters are read as outliers
        TensorCodec().decompress_tensor(_rebuild(fields, b"", rest))
    stored = TensorCodec.with_level(L.NONE).compress_tensor(OUTLIER_X)
    with pytest.raises(MalformedMessage, match="flags"):
        TensorCodec().decompress_tensor(recrc(stored[:8] + b"\x02" + stored[9:]))


@settings(max_examples=200, deadline=None)
@given(
    index=st.lists(st.integers(0, 5000), max_size=20),
    values=st.lists(st.floats(width=32), min_size=20, max_size=20),
    level=st.sampled_from(LOSSY),
)
def test_any_outlier_section_decodes_exactly_or_is_a_typed_rejection(index, values, level):
    """Structured hostile input: only increasing in-range indices with finite values, 1 to n // 256 of them, pass."""
    fields, rest = _split_outliers(OUTLIER_BLOBS[level])
    vals = values[: len(index)]
    blob = _rebuild(fields, _section(index, vals), rest)
    valid = (
        1 <= len(index) <= 16
        and all(a < b for a, b in zip(index, index[1:]))
        and index[-1] < 4096
        and all(np.isfinite(vals))
    )
    if not valid:
        with pytest.raises(MalformedMessage):
            TensorCodec().decompress_tensor(blob)
        return
    back = TensorCodec().decompress_tensor(blob)
    assert np.array_equal(bits(back[index]), bits(np.array(vals, np.float32)))


def test_tensor_and_bytes_containers_are_not_confused():
    with pytest.raises(MalformedMessage):
        TensorCodec().decompress(SAMPLES[0][0])
    with pytest.raises(MalformedMessage):
        TensorCodec().decompress_tensor(SAMPLES[-1][0])


# Adaptive choice -----------------------------------------------------------------------------

def profiles() -> list[LevelProfile]:
    return [
        LevelProfile(L.NONE, 1.0, 5e9, 5e9, 0.0),
        LevelProfile(L.FAST, 1.0, 1e9, 3e9, 0.0),
        LevelProfile(L.HIGH, 1.2, 1.5e8, 3e8, 0.0),
        LevelProfile(L.QUANTIZED8, 4.2, 1e9, 1e9, 0.007),
        LevelProfile(L.QUANTIZED4, 7.5, 5e8, 5e8, 0.09),
    ]


def test_choice_follows_bandwidth_and_error_budget():
    n = 4 << 20
    fast_link, slow_link = LinkEstimate(10e9, 0.0001), LinkEstimate(1e6, 0.2)
    assert choose_level(profiles(), n, fast_link)[0] is L.NONE
    assert choose_level(profiles(), n, slow_link)[0] is L.HIGH
    assert choose_level(profiles(), n, slow_link, max_relative_rms_error=0.01)[0] is L.QUANTIZED8
    assert choose_level(profiles(), n, slow_link, max_relative_rms_error=0.1)[0] is L.QUANTIZED4
    level, times = choose_level(profiles(), n, slow_link)
    assert set(times) == set(LOSSLESS)
    assert times[L.HIGH] == pytest.approx(n / 1.5e8 + 0.2 + n / 1.2 / 1e6 + n / 3e8)


def test_adaptive_codec_measures_and_round_trips():
    x = np.random.default_rng(1).standard_normal(200_000).astype(np.float32)
    adaptive = AdaptiveCodec(allow_lossy=True, max_relative_rms_error=0.01, sample_elements=1 << 14)
    blob = adaptive.compress_tensor(x, LinkEstimate(1e5, 0.05))
    level, _ = adaptive.last_choice
    assert level is L.QUANTIZED8
    back = adaptive.decompress_tensor(blob)
    assert np.sqrt(np.mean((back - x) ** 2)) <= 0.01
    lossless = AdaptiveCodec()
    assert lossless.choose(x, LinkEstimate(1e5, 0.05)) in LOSSLESS
    assert np.array_equal(lossless.decompress_tensor(lossless.compress_tensor(x, LinkEstimate(1e12, 0))), x)


def test_link_meter():
    meter = LinkMeter(LinkEstimate(1e6, 0.01), alpha=1.0)
    meter.observe_rtt(0.1)
    meter.observe_transfer(1_000_000, 0.55)
    assert meter.estimate.latency_s == pytest.approx(0.05)
    assert meter.estimate.bandwidth_bytes_per_s == pytest.approx(2e6)
    meter.observe_transfer(10, float("nan"))
    with pytest.raises(InvalidCodecConfig):
        LinkEstimate(0, 0)
