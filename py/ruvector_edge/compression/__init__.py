"""Tensor compression: a self-describing container, five levels, and an adaptive chooser."""

from .adaptive import AdaptiveCodec, LevelProfile, LinkEstimate, LinkMeter, choose_level
from .container import CompressionLevel, Limits
from .lz4codec import Codec, NativeLz4Codec
from .tensor_codec import TensorCodec

__all__ = [
    "AdaptiveCodec",
    "Codec",
    "CompressionLevel",
    "LevelProfile",
    "Limits",
    "LinkEstimate",
    "LinkMeter",
    "NativeLz4Codec",
    "TensorCodec",
    "choose_level",
]
