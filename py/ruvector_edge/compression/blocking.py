"""A quantized level's plan for one tensor: which values go to the exact outlier side channel, and which block size.

Why: one fixed block size cannot hold both promises of a level (Quantized8:
≥ 4× at ≤ 1% relative RMS error; Quantized4: ≥ 7× at ≤ 10% on Gaussian data,
and ≤ 10% everywhere). Per-block affine quantization errs by step²/12 per
value, with the step set by the block's range; heavy-tailed tensors (trained
weights are roughly Laplace-shaped) have wide block ranges, and a single large
outlier widens its whole block. So outliers are taken out and sent exactly, and
the block size is then the largest one whose error, measured on this tensor's
own block ranges, stays within the budget. One set of rules serves both levels;
a level's `Rules` say how many steps it has, its error target, and its cells.

Every decision here uses only exact or element-wise IEEE operations (min, max,
comparisons, products by powers of two, sums of integers small enough to be
exact in any order), so the JS port in web/bridges/lz4.js reaches the same
plan bit for bit; a floating-point sum over the data would not.

The rules, on cells of `cell` consecutive values (the last may be shorter):

1. Outliers. A cell is suspect when its range exceeds `SPREAD` times the larger
   range of its neighbour cells (both neighbours: one outlier widens one cell),
   or of the cells two away when that is smaller (two outliers in neighbouring
   cells would otherwise hide each other). The reference cell is that wider one
   (the left on ties, the neighbours on ties between the pairs); the band is its
   midrange ± SPREAD/2 times its range, and the suspect cell's values outside the
   band are its outliers — if there are at most the level's `per_cell` of them
   (more is a change of scale, not outliers). Cells are taken in order while the
   running count stays within `container.max_outliers(n)`. Each outlier is
   replaced, for the quantizer, by the reference midrange (rounded to float32);
   the decoder puts the exact value back.
2. Block size. With M the largest magnitude and p = 2^(8 - e) for M = m·2^e,
   ½ ≤ m < 1 (p kept within float32), the energy is E = Σ rint((x·p)²) over the
   original values, each term computed in float32 (at most 2^16), and for each
   candidate size B (the cell, then doublings up to 4,096) the error is
   S(B) = Σ_blocks w_b · rint((range_b·p)²) in float64, ranges taken after the
   outliers are replaced. With L the level's steps (255 or 15) the predicted
   relative RMS error is √(S / (12·L²·E)), and B is the largest candidate with
   S(B) ≤ 12·L²·target²·E (the smallest candidate when none is).
   The weight w_b counts each of the block's values once, as a value rounded to
   a uniformly random point of its step errs by step²/12 on average, and three
   times when its cell's range × L is below the block's range: such a cell sits
   inside one step (a block widened by a value no rule caught, such as the third
   of three close outliers or a far Student-t tail), its values round as one
   cluster and may all err by half a step, step²/4. Counting them once let the
   plan pick 256-512-value blocks that measured 10.2-12% for Quantized4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidTensor
from .container import max_outliers

__all__ = ["MAX_BLOCK", "Plan", "Rules", "RULES", "plan"]

SPREAD = 4.0
MAX_BLOCK = 4096  # past this the parameters cost under 0.1% of either level's codes


@dataclass(frozen=True)
class Rules:
    """One quantized level's planning constants.

    `cell` is the smallest block size and the outlier unit, a power of two
    (blocks are cells merged pairwise up to `MAX_BLOCK`). `target` is the
    predicted relative RMS error aimed for, a little under the level's budget
    because measured errors land near the prediction. `per_cell` is the most
    outliers a cell may have.
    """

    levels: int
    target: float
    cell: int
    per_cell: int

    @property
    def candidates(self) -> tuple[int, ...]:
        return tuple(self.cell << k for k in range((MAX_BLOCK // self.cell).bit_length()))

    @property
    def budget(self) -> float:
        """12·L²·target², the bound on S/E (computed in this order in JS too)."""
        return 12 * self.levels * self.levels * self.target * self.target


# Quantized4 works on 16-value cells: Laplace-shaped data needs 32-value blocks for 10% (9.2% there, 11.1% at
# 64). Its target sits between Laplace at 32 (predicted 9.44-9.50% on 2^18-2^20 values, so 9.5% would drop
# some to 16, 5.4x) and N(0,1) at 128 (predicted 10.0%, measured 9.97%: too close to the budget). Two
# outliers per 16-value cell: with 8, the half rows of a Q-table whose values sit 4x above the rows
# around them went as 1,245 "outliers" (9.14x -> 8.56x).
RULES = {255: Rules(255, 0.0095, 128, 8), 15: Rules(15, 0.0975, 16, 2)}


@dataclass(frozen=True)
class Plan:
    block: int
    values: np.ndarray  # what the quantizer sees: the tensor with its outliers replaced
    mins: np.ndarray  # per block of `block` values
    maxs: np.ndarray
    outlier_index: np.ndarray  # uint32, increasing
    outlier_value: np.ndarray  # float32, exact


def _cells(x: np.ndarray, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's minimum and maximum.

    reduceat pays per segment: on 16-value cells pairwise halving is 2.6x faster (0.9 ms for 1M values),
    on 128-value ones reduceat is 2x faster. Both give the same bits, signed zeros included (tested).
    """
    if cell >= 64:
        starts = np.arange(0, x.size, cell)
        mins, maxs = np.minimum.reduceat(x, starts), np.maximum.reduceat(x, starts)
    else:
        full = x.size - x.size % cell
        mins = maxs = x[:full]
        for _ in range(cell.bit_length() - 1):
            mins, maxs = np.minimum(mins[0::2], mins[1::2]), np.maximum(maxs[0::2], maxs[1::2])
        if full < x.size:
            mins = np.append(mins, np.minimum.reduceat(x[full:], [0]))
            maxs = np.append(maxs, np.maximum.reduceat(x[full:], [0]))
    if not (np.isfinite(mins).all() and np.isfinite(maxs).all()):
        raise InvalidTensor("lossy levels need finite values (NaN or infinity found)")
    return mins, maxs


def _outliers(
    x: np.ndarray, mins: np.ndarray, maxs: np.ndarray, cell: int, per_cell: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The outliers' indices and stand-in values, and the cell minima and maxima once they are replaced."""
    nc = mins.size
    none = np.empty(0, np.int64), np.empty(0, np.float32), mins, maxs
    if nc < 2:
        return none
    lo, hi = mins.astype(np.float64), maxs.astype(np.float64)
    r = hi - lo
    padded = np.concatenate(([-1.0, -1.0], r, [-1.0, -1.0]))  # -1: no cell there
    c = np.arange(nc)
    near = np.maximum(padded[1 : nc + 1], padded[3 : nc + 3])
    far = np.maximum(padded[:nc], padded[4 : nc + 4])
    ref = np.where(padded[1 : nc + 1] >= padded[3 : nc + 3], c - 1, c + 1)
    use_far = (far >= 0) & (far < near)
    ref = np.where(use_far, np.where(padded[:nc] >= padded[4 : nc + 4], c - 2, c + 2), ref)
    suspect = np.flatnonzero(r > SPREAD * np.where(use_far, far, near))
    if not suspect.size:
        return none
    nb = ref[suspect]
    mid = (lo[nb] + hi[nb]) / 2 + 0.0  # + 0.0 makes -0.0 into 0.0, as in JS
    half = SPREAD / 2 * r[nb]
    pos = suspect[:, None] * cell + np.arange(cell)
    inside = pos < x.size
    vals = x[np.minimum(pos, x.size - 1)].astype(np.float64)
    hit = inside & ((vals < (mid - half)[:, None]) | (vals > (mid + half)[:, None]))
    counts = hit.sum(axis=1)
    counts[counts > per_cell] = 0
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


def plan(x: np.ndarray, rules: Rules) -> Plan:
    """The outliers and block size for a flat float32 tensor (rules in the module docstring); InvalidTensor if not finite."""
    n, cell = x.size, rules.cell
    candidates = rules.candidates
    if n == 0:
        empty = np.empty(0, np.float32)
        return Plan(candidates[0], x, empty, empty, np.empty(0, np.uint32), empty)
    mins, maxs = _cells(x, cell)
    p = _scale(mins, maxs)
    work = np.multiply(x, np.float32(p))
    np.square(work, out=work)
    np.rint(work, out=work)
    # Integers of at most 2^16: a 256-value float32 sum (≤ 2^24) and the float64 total are exact in any order.
    energy = float(np.add.reduceat(work, np.arange(0, n, 256)).sum(dtype=np.float64))
    idx, fill, mins, maxs = _outliers(x, mins, maxs, cell, rules.per_cell)
    values = x
    if idx.size:
        values = x.copy()
        values[idx] = fill
    budget = rules.budget * energy
    nc = mins.size
    # Cell steps padded (with steps nothing is under) to whole blocks of every candidate: one reshape each.
    steps = np.full(-(-nc // (MAX_BLOCK // cell)) * (MAX_BLOCK // cell), np.inf)
    steps[:nc] = (maxs.astype(np.float64) - mins.astype(np.float64)) * rules.levels
    best = (candidates[0], mins, maxs)
    for block in candidates:
        if block > cell:
            if mins.size % 2:
                mins, maxs = np.append(mins, mins[-1]), np.append(maxs, maxs[-1])
            mins, maxs = np.minimum(mins[0::2], mins[1::2]), np.maximum(maxs[0::2], maxs[1::2])
        sizes = np.full(mins.size, float(block))
        sizes[-1] = n - (mins.size - 1) * block
        ranges = (maxs.astype(np.float64) - mins.astype(np.float64))
        # Cells whose range is under their block's step count twice more (few: a vectorised sum over them).
        clustered = np.flatnonzero(steps.reshape(-1, block // cell)[: mins.size] < ranges[:, None])
        ranges *= p
        squares = np.rint(ranges * ranges)
        extra = np.where(clustered == nc - 1, n - (nc - 1) * cell, cell) * squares[clustered // (block // cell)]
        if float((sizes * squares).sum() + 2 * extra.sum()) > budget:
            break
        best = (block, mins, maxs)
        if mins.size == 1:
            break
    block, mins, maxs = best
    return Plan(block, values, mins, maxs, idx.astype(np.uint32), x[idx])
