"""Pretraining methods and the factory the engine uses."""

from torch import nn

from ..errors import PretrainError
from .base import MomentumContrast
from .densecl import DenseCL
from .mocov2 import MoCoV2
from .supervised import Supervised

METHODS = ("densecl", "mocov2", "supervised")


def build_model(cfg, num_classes: int = 0) -> nn.Module:
    """The model for cfg.MODEL.METHOD; `num_classes` is used by the supervised baseline only."""
    method = cfg.MODEL.METHOD
    if method == "densecl":
        return DenseCL.from_config(cfg)
    if method == "mocov2":
        return MoCoV2.from_config(cfg)
    if method == "supervised":
        return Supervised.from_config(cfg, num_classes)
    raise PretrainError(f"MODEL.METHOD {method!r} is unknown; expected one of {', '.join(METHODS)}.")


__all__ = ["METHODS", "DenseCL", "MoCoV2", "MomentumContrast", "Supervised", "build_model"]
