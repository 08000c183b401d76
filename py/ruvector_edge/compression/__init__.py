"""Tensor compression: a self-describing container, five levels, and an adaptive chooser."""

from .container import CompressionLevel, Limits
from .lz4codec import Codec, NativeLz4Codec
from .tensor_codec import Float32Tensor, TensorCodec

_ADAPTIVE = ("AdaptiveCodec", "LevelProfile", "LinkEstimate", "LinkMeter", "choose_level")


def __getattr__(name: str):
    """The adaptive chooser needs numpy: imported on first use, so the browser can import the codec without it."""
    if name in _ADAPTIVE:
        from . import adaptive

        return getattr(adaptive, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AdaptiveCodec",
    "Codec",
    "CompressionLevel",
    "Float32Tensor",
    "LevelProfile",
    "Limits",
    "LinkEstimate",
    "LinkMeter",
    "NativeLz4Codec",
    "TensorCodec",
    "choose_level",
]
