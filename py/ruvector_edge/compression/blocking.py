"""Quantized8's plan for one tensor: which values go to the exact outlier side channel, and which block size.

Why: one fixed block size cannot hold both promises (≥ 4× at ≤ 1% relative
RMS error). Per-block affine quantization errs by step²/12 per value, with the
step set by the block's range; heavy-tailed tensors (trained weights are
roughly Laplace-shaped) have wide block ranges, and a single large outlier
widens its whole block. So outliers are taken out and sent exactly, and the
block size is then the largest one whose error, measured on this tensor's own
block ranges, stays within the budget.

Every decision here uses only exact or element-wise IEEE operations (min, max,
comparisons, products by powers of two, sums of integers small enough to be
exact in any order), so the JS port in web/bridges/lz4.js reaches the same
plan bit for bit; a floating-point sum over the data would not.

The rules, on cells of `CELL` consecutive values (the last may be shorter):

1. Outliers. A cell is suspect when its range exceeds `SPREAD` times the larger
   range of its neighbour cells (both neighbours: one outlier widens one cell).
   The reference neighbour is that wider one (the left on ties); the band is its
   midrange ± SPREAD/2 times its range, and the suspect cell's values outside the
   band are its outliers — if there are at most `MAX_PER_CELL` of them (more is
   a change of scale, not outliers). Cells are taken in order while the running
   count stays within `container.max_outliers(n)`. Each outlier is replaced, for the
   quantizer, by the reference midrange (rounded to float32); the decoder puts
   the exact value back.
2. Block size. With M the largest magnitude and p = 2^(8 - e) for M = m·2^e,
   ½ ≤ m < 1 (p kept within float32), the energy is E = Σ rint((x·p)²) over the
   original values, each term computed in float32 (at most 2^16), and for each
   candidate size B the error is S(B) = Σ_blocks n_b · rint((range_b·p)²) in
   float64, ranges taken after the outliers are replaced. Then the predicted
   relative RMS error is √(S / (12·255²·E)), and B is the largest candidate
   with S(B) ≤ 12·255²·TARGET²·E (the smallest candidate when none is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidTensor
from .container import max_outliers

__all__ = ["CELL", "CANDIDATES", "Q8Plan", "plan_q8"]

CELL = 128
CANDIDATES = (128, 256, 512, 1024, 2048, 4096)
SPREAD = 4.0
MAX_PER_CELL = 8
TARGET = 0.0095  # predicted relative RMS error; measured errors land a little below it
_BUDGET = 12 * 255 * 255 * TARGET * TARGET


@dataclass(frozen=True)
class Q8Plan:
    block: int
    values: np.ndarray  # what the quantizer sees: the tensor with its outliers replaced
    mins: np.ndarray  # per block of `block` values
    maxs: np.ndarray
    outlier_index: np.ndarray  # uint32, increasing
    outlier_value: np.ndarray  # float32, exact


def _cells(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts = np.arange(0, x.size, CELL)
    mins, maxs = np.minimum.reduceat(x, starts), np.maximum.reduceat(x, starts)
    if not (np.isfinite(mins).all() and np.isfinite(maxs).all()):
        raise InvalidTensor("lossy levels need finite values (NaN or infinity found)")
    return mins, maxs


def _outliers(x: np.ndarray, mins: np.ndarray, maxs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The outliers' indices and stand-in values, and the cell minima and maxima once they are replaced."""
    nc = mins.size
    none = np.empty(0, np.int64), np.empty(0, np.float32), mins, maxs
    if nc < 2:
        return none
    lo, hi = mins.astype(np.float64), maxs.astype(np.float64)
    r = hi - lo
    left = np.concatenate(([-1.0], r[:-1]))
    right = np.concatenate((r[1:], [-1.0]))
    ref = np.where(left >= right, np.arange(nc) - 1, np.arange(nc) + 1)
    suspect = np.flatnonzero(r > SPREAD * r[ref])
    if not suspect.size:
        return none
    nb = ref[suspect]
    mid = (lo[nb] + hi[nb]) / 2 + 0.0  # + 0.0 makes -0.0 into 0.0, as in JS
    half = SPREAD / 2 * r[nb]
    pos = suspect[:, None] * CELL + np.arange(CELL)
    inside = pos < x.size
    vals = x[np.minimum(pos, x.size - 1)].astype(np.float64)
    hit = inside & ((vals < (mid - half)[:, None]) | (vals > (mid + half)[:, None]))
    counts = hit.sum(axis=1)
    counts[counts > MAX_PER_CELL] = 0
    keep = np.cumsum(counts) <= max_outliers(x.size)
    taken = keep & (counts > 0)
    if not taken.any():
        return none
    hit, pos, inside, vals = hit[taken], pos[taken], inside[taken], vals[taken]
    fill = mid[taken].astype(np.float32)
    replaced = np.where(hit, fill[:, None].astype(np.float64), vals)
    mins, maxs = mins.copy(), maxs.copy()
    mins[suspect[taken]] = np.where(inside, replaced, np.inf).min(axis=1)
    maxs[suspect[taken]] = np.where(inside, replaced, -np.inf).max(axis=1)
    rows, cols = np.nonzero(hit)
    return pos[rows, cols], fill[rows], mins, maxs


def _scale(mins: np.ndarray, maxs: np.ndarray) -> float:
    m = max(float(np.abs(mins).max()), float(np.abs(maxs).max()))
    if m == 0:
        return 1.0
    return math.ldexp(1.0, min(127, 8 - math.frexp(m)[1]))


def plan_q8(x: np.ndarray) -> Q8Plan:
    """The outliers and block size for a flat float32 tensor (rules in the module docstring); InvalidTensor if not finite."""
    n = x.size
    if n == 0:
        empty = np.empty(0, np.float32)
        return Q8Plan(CANDIDATES[0], x, empty, empty, np.empty(0, np.uint32), empty)
    mins, maxs = _cells(x)
    p = _scale(mins, maxs)
    work = np.multiply(x, np.float32(p))
    np.square(work, out=work)
    np.rint(work, out=work)
    # Integers of at most 2^16: a cell's float32 sum (≤ 2^23) and the float64 total are exact in any order.
    energy = float(np.add.reduceat(work, np.arange(0, n, CELL)).sum(dtype=np.float64))
    idx, fill, mins, maxs = _outliers(x, mins, maxs)
    values = x
    if idx.size:
        values = x.copy()
        values[idx] = fill
    budget = _BUDGET * energy
    best = (CANDIDATES[0], mins, maxs)
    for block in CANDIDATES:
        if block > CELL:
            if mins.size % 2:
                mins, maxs = np.append(mins, mins[-1]), np.append(maxs, maxs[-1])
            mins, maxs = np.minimum(mins[0::2], mins[1::2]), np.maximum(maxs[0::2], maxs[1::2])
        sizes = np.full(mins.size, float(block))
        sizes[-1] = n - (mins.size - 1) * block
        ranges = (maxs.astype(np.float64) - mins.astype(np.float64)) * p
        if float((sizes * np.rint(ranges * ranges)).sum()) > budget:
            break
        best = (block, mins, maxs)
        if mins.size == 1:
            break
    block, mins, maxs = best
    return Q8Plan(block, values, mins, maxs, idx.astype(np.uint32), x[idx])
