"""Helpers of the transfer tests: random-weight torchvision ResNets and Detectron2 configs."""

from pathlib import Path

import torch
import torchvision
from detectron2.config import get_cfg

import transfer.modeling  # noqa: F401  (registers Res5ROIHeadsExtraNorm, the dilated ResNet, FCNHead)
from transfer.config import add_transfer_config
from transfer.runtime import fall_back_to_bn

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "transfer" / "configs"


def random_resnet_state_dict(depth: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision ResNet-`depth` state dict with every tensor random (BN running stats included)."""
    generator = torch.Generator().manual_seed(seed)
    model = getattr(torchvision.models, f"resnet{depth}")()
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            state[key] = torch.rand(value.shape, generator=generator) + 0.5  # positive: valid running_var
        else:
            state[key] = value.clone()
    return state


def make_cfg(config_file: str, *opts: str, world_size: int = 1):
    """Config of a transfer/configs file on CPU, with the single-process BN fallback applied."""
    cfg = get_cfg()
    add_transfer_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *opts])
    fall_back_to_bn(cfg, world_size)
    return cfg


def depth_opts(depth: int) -> list[str]:
    return ["MODEL.RESNETS.DEPTH", str(depth)] + (
        ["MODEL.RESNETS.RES2_OUT_CHANNELS", "64"] if depth < 50 else []
    )
