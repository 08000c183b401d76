"""Exact cosine top-k behind one interface, so each runtime brings its fastest kernel.

Every vector crosses the seam as a *unit vector packed as little-endian
float32 bytes* (`pack_unit_vector`): that is what SQLite stores, what sync
sends, and what a JS kernel can view as a `Float32Array` without converting
element by element through the Pyodide FFI. The interface is batch-first
(`add_many`, `search` over several queries) because each FFI crossing costs
~100 µs: loading 100K stored memories or answering 100 queries is then one
crossing, not 100K.

Rows are dense (`0..len-1`): `remove` moves the last row into the hole, so a
kernel never scans dead slots. Ties are the caller's business: `search` returns
*every* row scoring at least the k-th best score, so the caller can break ties
by a key that is the same on every replica (the memory id) instead of by a row
number that depends on insertion and eviction history.
"""

from __future__ import annotations

import abc
import heapq
import math
import numbers
import operator
import sys
from array import array
from collections.abc import Iterable, Sequence, Sized
from typing import TYPE_CHECKING

from ..errors import MalformedMessage

if TYPE_CHECKING:
    from .index_file import IndexFile

__all__ = ["PurePythonKernel", "VectorKernel", "default_kernel", "pack_unit_blobs", "pack_unit_vector", "unpack_vector"]

_LITTLE = sys.byteorder == "little"
_sumprod = getattr(math, "sumprod", None)  # 3.12+ (Pyodide): a C loop instead of map()
try:  # natively, and in a Pyodide that serves it; pack_unit_vector's loop is the fallback
    import numpy as _np
except ImportError:
    _np = None


def _f32_bytes(values: array) -> bytes:
    if not _LITTLE:
        values = array("f", values)
        values.byteswap()
    return values.tobytes()


def unpack_vector(blob: bytes) -> array:
    """Little-endian float32 bytes back to an `array('f')`."""
    values = array("f")
    values.frombytes(blob)
    if not _LITTLE:
        values.byteswap()
    return values


def pack_unit_vector(values: object, dim: int) -> bytes:
    """Check an embedding and return it L2-normalised as little-endian float32 bytes.

    Refuses (MalformedMessage, nothing kept) anything that is not a sequence of
    exactly `dim` real numbers, or that holds NaN/inf, or is all zeros: a zero
    vector has no direction, and a NaN would poison every comparison it enters.
    Normalisation is done here, once, in float64 and in pure Python, so the
    stored bytes are the same whichever kernel or runtime computed them.
    """
    if isinstance(values, (str, bytes, bytearray, dict)) or values is None:
        raise MalformedMessage("embedding must be a sequence of numbers")
    if _np is not None and (isinstance(values, array) and values.typecode in "fd"
                            or isinstance(values, _np.ndarray) and values.dtype in (_np.float32, _np.float64)):
        return _pack_float_array(values, dim)
    if hasattr(values, "tolist"):  # numpy arrays and array('f') without importing numpy
        values = values.tolist()
    if not isinstance(values, Sized) or not isinstance(values, Iterable):
        raise MalformedMessage("embedding must be a sequence of numbers")
    if len(values) != dim:
        raise MalformedMessage(f"embedding has {len(values)} dimensions, this memory holds {dim}")
    floats = []
    for item in values:
        if type(item) not in (float, int) and (isinstance(item, bool) or not isinstance(item, numbers.Real)):
            raise MalformedMessage(f"embedding values must be real numbers, not {type(item).__name__}")
        try:
            as_float = float(item)
        except OverflowError:
            as_float = math.inf
        if not math.isfinite(as_float):
            raise MalformedMessage("embedding holds NaN or infinity")
        floats.append(as_float)
    scale = max(map(abs, floats), default=0.0)
    if scale == 0.0:
        raise MalformedMessage("embedding is all zeros: it has no direction")
    scaled = [x / scale for x in floats]  # |x| <= 1, so the squares cannot overflow
    norm = math.sqrt(math.fsum(x * x for x in scaled))
    return _f32_bytes(array("f", [x / norm for x in scaled]))


def _pack_float_array(values, dim: int) -> bytes:
    """`pack_unit_vector` for a float32/float64 array, vectorised: a synced entry's vector arrives as
    array('f') and the pure loop cost ~0.6 ms of a 384-d import. Bit for bit the same result: the
    same float64 divisions and squares, the same exactly rounded `fsum`, the same rounding to float32."""
    v = _np.asarray(values, dtype=_np.float64)
    if v.shape != (dim,):
        raise MalformedMessage(f"embedding has {v.size} dimensions, this memory holds {dim}")
    if not _np.isfinite(v).all():
        raise MalformedMessage("embedding holds NaN or infinity")
    scale = float(_np.max(_np.abs(v), initial=0.0))
    if scale == 0.0:
        raise MalformedMessage("embedding is all zeros: it has no direction")
    scaled = v / scale
    norm = math.sqrt(math.fsum((scaled * scaled).tolist()))
    return (scaled / norm).astype("<f4").tobytes()


def pack_unit_blobs(blobs: Sequence[bytes], dim: int) -> list[bytes | MalformedMessage]:
    """`pack_unit_vector` over packed float32 vectors (a SYNC_MEMORIES page), each row's bytes or its error.

    Done per row, the numpy calls and the `fsum` cost ~12 µs of a 384-d entry, a fifth of a sync
    import; here the page is checked and normalised in one pass with the same result bit for bit
    (`_exact_row_sums`). Every blob must be 4 * dim bytes (the caller checked the length)."""
    if _np is None or not blobs:
        return [_pack_or_error(unpack_vector(blob), dim) for blob in blobs]
    v = _np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim).astype(_np.float64)
    finite = _np.isfinite(v).all(axis=1)
    scale = _np.where(finite, _np.abs(_np.where(finite[:, None], v, 0.0)).max(axis=1), 0.0)
    usable = finite & (scale > 0.0)
    scaled = v[usable] / scale[usable, None]
    unit = (scaled / _np.sqrt(_exact_row_sums(scaled * scaled))[:, None]).astype("<f4")
    packed = iter(unit.tobytes()[at : at + 4 * dim] for at in range(0, unit.size * 4, 4 * dim))
    return [next(packed) if ok else MalformedMessage("embedding holds NaN or infinity" if not fine
                                                     else "embedding is all zeros: it has no direction")
            for ok, fine in zip(usable.tolist(), finite.tolist())]


def _pack_or_error(values, dim: int) -> bytes | MalformedMessage:
    try:
        return pack_unit_vector(values, dim)
    except MalformedMessage as error:
        return error


def _exact_row_sums(squares) -> object:
    """Each row's sum as `math.fsum` rounds it (exactly), for non-negative rows, vectorised.

    A tree of error-free additions (TwoSum) keeps every rounding error, the errors are added
    in float64 (their sum is off by at most ~levels² u² of the total), and a last TwoSum gives
    hi + lo. hi is the exactly rounded sum unless the true sum may lie on the other side of a
    midpoint between hi and a neighbour — lo within that error of half a gap, about one row in
    10^12 — and those rows are summed with `fsum`."""
    total = squares
    errors = _np.zeros(len(squares))
    while total.shape[1] > 1:
        if total.shape[1] % 2:
            total = _np.concatenate([total, _np.zeros((len(total), 1))], axis=1)
        a, b = total[:, 0::2], total[:, 1::2]
        total = a + b
        b_part = total - a
        errors += ((a - (total - b_part)) + (b - b_part)).sum(axis=1)
    top = total[:, 0] if total.shape[1] else _np.zeros(len(squares))
    hi = top + errors
    b_part = hi - top
    lo = (top - (hi - b_part)) + (errors - b_part)
    slack = 2.0**-90 * hi  # > 100 levels² u² of the sum: the float64 sum of the errors' own error
    up = _np.spacing(hi) / 2
    down = _np.spacing(_np.nextafter(hi, 0.0)) / 2
    doubtful = _np.flatnonzero(_np.where(lo >= 0, lo + slack >= up, slack - lo >= down))
    for row in doubtful.tolist():
        hi[row] = math.fsum(squares[row].tolist())
    return hi


class VectorKernel(abc.ABC):
    """Holds unit vectors in dense rows and answers exact cosine top-k queries."""

    name: str = "abstract"

    def __init__(self, dim: int) -> None:
        if type(dim) is not int or dim < 1:
            raise ValueError(f"dimension must be a positive integer, not {dim!r}")
        self.dim = dim

    @abc.abstractmethod
    def __len__(self) -> int:
        """How many rows are held."""

    @abc.abstractmethod
    def add_many(self, vectors: Sequence[bytes]) -> None:
        """Append packed unit vectors as rows `len(self)`, `len(self)+1`, ... in order."""

    @abc.abstractmethod
    def remove(self, row: int) -> int | None:
        """Drop a row by moving the last row into its place; return the moved row's old index (None if `row` was last)."""

    @abc.abstractmethod
    def search(self, queries: Sequence[bytes], k: int) -> list[list[tuple[int, float]]]:
        """For each packed unit query: every (row, cosine) whose score is at least the k-th best, in any order."""

    def add(self, vector: bytes) -> int:
        self.add_many([vector])
        return len(self) - 1

    def restore(self, vectors: Sequence[bytes], keys: Sequence[str], source: IndexFile, tag: str) -> None:
        """Fill an empty kernel with a store's rows (`keys` name them, `tag` the model that made them),
        taking whatever index `source` saved for them. An exact kernel has no index: it just adds them."""
        self.add_many(vectors)

    def persist(self, target: IndexFile, keys: Sequence[str], tag: str) -> None:
        """Save the index over the current rows (`keys[row]` names each) for the next `restore`; nothing here."""


def _at_least_kth(candidates: Iterable[tuple[int, float]], k: int) -> list[tuple[int, float]]:
    """Keep the candidates scoring at least the k-th best score (boundary ties all kept)."""
    pool = list(candidates)
    if len(pool) <= k:
        return pool
    threshold = heapq.nlargest(k, (score for _, score in pool))[-1]
    return [(row, score) for row, score in pool if score >= threshold]


class PurePythonKernel(VectorKernel):
    """The kernel that runs anywhere Python does: Pyodide without numpy, small sets, tests.

    Scores are float64 sums over the float32 components, so they match the
    numpy kernel's float32 scores to about 1e-6, not bit for bit.
    """

    name = "python"

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self._rows: list[tuple[float, ...]] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add_many(self, vectors: Sequence[bytes]) -> None:
        rows = []
        for blob in vectors:
            if len(blob) != 4 * self.dim:
                raise ValueError(f"packed vector of {len(blob)} bytes, expected {4 * self.dim}")
            rows.append(tuple(unpack_vector(blob)))
        self._rows.extend(rows)

    def remove(self, row: int) -> int | None:
        last = len(self._rows) - 1
        if not 0 <= row <= last:
            raise IndexError(row)
        moved = self._rows.pop()
        if row == last:
            return None
        self._rows[row] = moved
        return last

    def search(self, queries: Sequence[bytes], k: int) -> list[list[tuple[int, float]]]:
        results = []
        for blob in queries:
            query = tuple(unpack_vector(blob))
            if _sumprod is not None:
                scores = [_sumprod(row, query) for row in self._rows]
            else:
                scores = [sum(map(operator.mul, row, query)) for row in self._rows]
            results.append(_at_least_kth(enumerate(scores), k))
        return results


def default_kernel(dim: int) -> VectorKernel:
    """numpy when it imports (native, or a Pyodide build that serves it), else pure Python.

    The runtime's own choice (the JS kernel in a browser) is `platform.default_vector_kernel`."""
    try:
        from .numpy_kernel import NumpyKernel
    except ImportError:
        return PurePythonKernel(dim)
    return NumpyKernel(dim)
