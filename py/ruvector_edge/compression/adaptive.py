"""Pick the compression level that delivers a tensor soonest over a measured link.

The rule, per level L among the candidates:

    time(L) = encode(L) + latency + size(L) / bandwidth + decode(L)

where encode/decode times and size come from compressing a sample of the actual
tensor (the whole tensor when it is small, else `sample_elements` values taken
as a few evenly spaced runs) at every candidate level and scaling by tensor
size, and latency/bandwidth come from a `LinkMeter` fed with real transfers.
The level with the smallest time wins; ties go to the lower level (less work,
less loss). Lossy levels are candidates only when the caller allows loss and
the sample's measured relative RMS error is within the caller's budget.

Latency is the same for every level of a single message, so it never changes
the choice; it is in the estimate so that the estimate is a real delivery time.
Unlike fixed Mbps/ms thresholds, the rule follows the machine: a slow CPU
(Pyodide) shifts the choice towards cheaper levels on the same link.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidCodecConfig
from .container import CompressionLevel, Limits
from .lz4codec import Codec
from .tensor_codec import TensorCodec, as_float32

__all__ = ["AdaptiveCodec", "LevelProfile", "LinkEstimate", "LinkMeter", "choose_level"]


@dataclass(frozen=True)
class LinkEstimate:
    bandwidth_bytes_per_s: float
    latency_s: float

    def __post_init__(self) -> None:
        if not (self.bandwidth_bytes_per_s > 0 and math.isfinite(self.bandwidth_bytes_per_s)):
            raise InvalidCodecConfig("bandwidth must be a positive finite number of bytes per second")
        if not (self.latency_s >= 0 and math.isfinite(self.latency_s)):
            raise InvalidCodecConfig("latency must be a non-negative finite number of seconds")


class LinkMeter:
    """Exponentially weighted bandwidth and latency from observed transfers (sans-I/O: fed by the transport)."""

    def __init__(self, initial: LinkEstimate, alpha: float = 0.2) -> None:
        if not 0 < alpha <= 1:
            raise InvalidCodecConfig("alpha must be in (0, 1]")
        self._bw = initial.bandwidth_bytes_per_s
        self._lat = initial.latency_s
        self._alpha = alpha

    def observe_rtt(self, seconds: float) -> None:
        if seconds >= 0 and math.isfinite(seconds):
            self._lat += self._alpha * (seconds / 2 - self._lat)

    def observe_transfer(self, nbytes: int, seconds: float) -> None:
        """A transfer of `nbytes` took `seconds` end to end; the one-way latency is taken out first."""
        busy = seconds - self._lat
        if nbytes > 0 and busy > 0 and math.isfinite(busy):
            self._bw += self._alpha * (nbytes / busy - self._bw)

    @property
    def estimate(self) -> LinkEstimate:
        return LinkEstimate(self._bw, self._lat)


@dataclass(frozen=True)
class LevelProfile:
    """What one level does to a given tensor: ratio, speeds (bytes of float32 per second), error."""

    level: CompressionLevel
    ratio: float
    encode_bytes_per_s: float
    decode_bytes_per_s: float
    relative_rms_error: float

    def delivery_time(self, nbytes: int, link: LinkEstimate) -> float:
        return (
            nbytes / self.encode_bytes_per_s
            + link.latency_s
            + nbytes / self.ratio / link.bandwidth_bytes_per_s
            + nbytes / self.decode_bytes_per_s
        )


def choose_level(
    profiles: Iterable[LevelProfile], nbytes: int, link: LinkEstimate, *, max_relative_rms_error: float = 0.0
) -> tuple[CompressionLevel, dict[CompressionLevel, float]]:
    """The level with the least delivery time among those within the error budget, and every estimate."""
    times = {
        p.level: p.delivery_time(nbytes, link)
        for p in profiles
        if not p.level.lossy or p.relative_rms_error <= max_relative_rms_error
    }
    best = min(sorted(times), key=lambda level: times[level])
    return best, times


class AdaptiveCodec:
    """Measures each candidate level on the tensor at hand, then compresses with the quickest to deliver."""

    def __init__(
        self,
        *,
        allow_lossy: bool = False,
        max_relative_rms_error: float = 0.01,
        sample_elements: int = 1 << 16,
        limits: Limits | None = None,
        codec: Codec | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not (0 <= max_relative_rms_error < math.inf) or sample_elements < 16:
            raise InvalidCodecConfig("error budget must be finite and non-negative; sample at least 16 values")
        self.allow_lossy = allow_lossy
        self.max_relative_rms_error = max_relative_rms_error
        self.sample_elements = sample_elements
        self.limits = limits or Limits()
        levels = list(CompressionLevel) if allow_lossy else [lv for lv in CompressionLevel if not lv.lossy]
        self._codecs = {lv: TensorCodec(lv, limits=self.limits, codec=codec) for lv in levels}
        self._timer = timer
        self.last_choice: tuple[CompressionLevel, dict[CompressionLevel, float]] | None = None

    def _sample(self, flat: np.ndarray) -> np.ndarray:
        if flat.size <= self.sample_elements:
            return flat
        runs = 8
        run = self.sample_elements // runs
        starts = np.linspace(0, flat.size - run, runs).astype(np.int64)
        return np.concatenate([flat[s : s + run] for s in starts])

    def profile(self, tensor: Any) -> list[LevelProfile]:
        sample = self._sample(as_float32(tensor).reshape(-1))
        nbytes = max(sample.nbytes, 1)
        energy = float(np.sqrt(np.mean(np.square(sample, dtype=np.float64)))) if sample.size else 0.0
        profiles = []
        for level, codec in self._codecs.items():
            t0 = self._timer()
            blob = codec.compress_tensor(sample)
            t1 = self._timer()
            back = codec.decompress_tensor(blob)
            t2 = self._timer()
            error = 0.0
            if level.lossy and energy > 0:
                error = float(np.sqrt(np.mean(np.square(back - sample, dtype=np.float64)))) / energy
            profiles.append(
                LevelProfile(level, nbytes / len(blob), nbytes / max(t1 - t0, 1e-9), nbytes / max(t2 - t1, 1e-9), error)
            )
        return profiles

    def choose(self, tensor: Any, link: LinkEstimate) -> CompressionLevel:
        arr = as_float32(tensor)
        self.last_choice = choose_level(
            self.profile(arr), arr.nbytes, link, max_relative_rms_error=self.max_relative_rms_error if self.allow_lossy else 0.0
        )
        return self.last_choice[0]

    def compress_tensor(self, tensor: Any, link: LinkEstimate) -> bytes:
        arr = as_float32(tensor)
        return self._codecs[self.choose(arr, link)].compress_tensor(arr)

    def decompress_tensor(self, data: bytes | memoryview) -> np.ndarray:
        return self._codecs[CompressionLevel.NONE].decompress_tensor(data)
