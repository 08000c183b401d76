"""The runtime-independent half of the browser codec: no numpy on the import path, Float32Tensor, the shape argument.

The JS half (lz4-wasm, the JS quantizer, IndexedDB blocks) runs in Chromium:
e2e/compression.spec.js checks it against this native codec bit for bit.
"""

from __future__ import annotations

import subprocess
import sys
from array import array

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ruvector_edge.compression import CompressionLevel, Float32Tensor, TensorCodec
from ruvector_edge.errors import InvalidTensor

_NO_NUMPY = """
import sys
class NoNumpy:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" or name.startswith("numpy."):
            raise ImportError("numpy is blocked: the browser has none")
sys.meta_path.insert(0, NoNumpy())
from ruvector_edge.compression import CompressionLevel, Float32Tensor, Limits, TensorCodec
from ruvector_edge.compression.tensor_codec import Float32Arrays
from ruvector_edge.artifacts import ArtifactStore, cid_for
assert "numpy" not in sys.modules
try:
    from ruvector_edge.compression import AdaptiveCodec
except ImportError:
    print("adaptive needs numpy")
print("ok")
"""


def test_codec_and_artifacts_import_without_numpy():
    """What the page imports must not pull numpy in (Pyodide here serves none)."""
    out = subprocess.run([sys.executable, "-c", _NO_NUMPY], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["adaptive", "needs", "numpy", "ok"]


shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, shapes, elements=st.floats(-1e6, 1e6, width=32)))
def test_float32tensor_round_trips_like_numpy(arr):
    t = Float32Tensor(arr.tobytes(), arr.shape)
    assert t.tolist() == arr.tolist()
    for level in CompressionLevel:
        codec = TensorCodec(level)
        assert codec.compress_tensor(t) == codec.compress_tensor(arr)


def test_flat_input_with_a_shape_is_the_same_container():
    arr = np.random.default_rng(3).standard_normal((4, 6)).astype(np.float32)
    for level in CompressionLevel:
        codec = TensorCodec(level)
        want = codec.compress_tensor(arr)
        assert codec.compress_tensor(arr.reshape(-1), (4, 6)) == want
        assert codec.compress_tensor(array("f", arr.tobytes()), [4, 6]) == want
        assert codec.decompress_tensor(want).shape == (4, 6)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Float32Tensor(b"123", (1,)),
        lambda: Float32Tensor(b"1234", (2,)),
        lambda: Float32Tensor(b"", (-1,)),
        lambda: Float32Tensor(b"", (1,) * 9),
        lambda: Float32Tensor(b"1234", 1),
        lambda: TensorCodec().compress_tensor([1.0, 2.0, 3.0], (2, 2)),
        lambda: TensorCodec().compress_tensor([1.0], (1.5,)),
        lambda: TensorCodec().compress_tensor([1.0], "x"),
        lambda: TensorCodec().compress_tensor([1.0], 3),
        lambda: TensorCodec().compress_tensor([1.0], (2**63 + 1,)),
        lambda: TensorCodec().compress_tensor(np.zeros(1, np.float32), (2**32 + 1, 2**32 - 1)),
    ],
)
def test_bad_tensors_and_shapes_are_refused(make):
    with pytest.raises(InvalidTensor):
        make()


def _reference_split(codes: list[int]) -> tuple[bytes, bytes]:
    """The documented Q8 split layout, one code at a time (what web/bridges/lz4.js writes too)."""
    padded = codes + [0] * (-len(codes) % 4)
    high, low = bytearray(), bytearray()
    for j in range(0, len(padded), 4):
        quad = padded[j : j + 4]
        high.append(sum((c >> 6) << (2 * k) for k, c in enumerate(quad)))
        low += sum((c & 63) << (6 * k) for k, c in enumerate(quad)).to_bytes(3, "little")
    return bytes(high), bytes(low)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 255), max_size=300))
def test_q8_split_streams_follow_the_documented_bit_layout(codes):
    from ruvector_edge.compression.quantize import join_q8, split_q8

    n = len(codes)
    padded = np.zeros(-(-n // 16) * 16 or 16, np.uint8)
    padded[:n] = codes
    high, low = split_q8(padded, n)
    assert (high, low) == _reference_split(codes)
    assert join_q8(high, low, n).tolist() == codes


@pytest.mark.parametrize("level", [CompressionLevel.QUANTIZED8, CompressionLevel.QUANTIZED4])
def test_subnormal_ranges_keep_the_half_step_error_bound(level):
    """A block whose scale is subnormal has no float32 reciprocal; it must still round to the nearest step.

    (Multiplying by the reciprocal gave inf × 0 = NaN codes, decoded as the block minimum.)
    """
    rng = np.random.default_rng(11)
    tiny = np.float32(1e-40) * rng.random(4096).astype(np.float32)  # all subnormal
    codec = TensorCodec(level, block_size=64)
    back = codec.decompress_tensor(codec.compress_tensor(tiny)).astype(np.float64)
    blocks = tiny.astype(np.float64).reshape(-1, 64)
    step = (blocks.max(axis=1) - blocks.min(axis=1)) / (255 if level is CompressionLevel.QUANTIZED8 else 15)
    err = np.abs(back.reshape(-1, 64) - blocks).max(axis=1)
    assert (step > 0).all()
    # Half a step, plus the scale's upward rounding (at most one subnormal unit, times the code) and one more unit.
    levels = 255 if level is CompressionLevel.QUANTIZED8 else 15
    assert (err <= step / 2 + (levels + 2) * 1.5e-45).all()
