"""MODEL.WEIGHTS -> a torchvision-named ResNet backbone state dict, strictly checked.

Two sources (the same files the Detectron2 transfer accepts, transfer/README.md "Convert"):
a Detectron2 weight pickle (`.pkl`, written by `python -m transfer.convert`) or a Detectron2 `.pth`
checkpoint, whose `stem.*`/`res2..res5` names are mapped back to torchvision's; or any raw ResNet
checkpoint `transfer.convert` accepts (our model_final.pth, MoCo .pth.tar, DenseCL .pth, torchvision),
whose query backbone is found and checked by the converter itself. Files are read safely only
(`torch.load(weights_only=True)`, array-only unpickler).
"""

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from pretrain.errors import PretrainError
from transfer.checkpoint_io import load_torch_checkpoint, load_weight_pickle
from transfer.convert import convert_state_dict, find_state_dict
from transfer.resnet_layout import detectron2_to_torchvision, expected_backbone_shapes
from transfer.weights import detectron2_resnet_depth

_D2_STEM = "stem.conv1.weight"


def load_backbone_weights(path: str, depth: int) -> dict[str, torch.Tensor]:
    """Every torchvision key of a ResNet-`depth` backbone (no fc, no num_batches_tracked) -> float tensor.

    Raises PretrainError for a missing file, another depth, missing keys or wrong shapes;
    TransferError (from transfer.checkpoint_io / transfer.convert) for unreadable or non-ResNet files.
    """
    file = Path(path)
    if not file.is_file():
        raise PretrainError(
            f"MODEL.WEIGHTS {path} does not exist. Expected a ResNet checkpoint (.pth/.pth.tar) or a "
            "Detectron2 .pkl from `python -m transfer.convert`; fix the path, or pass MODEL.WEIGHTS '' "
            "for a randomly initialised backbone."
        )
    if file.suffix == ".pkl":
        data = load_weight_pickle(file)
        d2 = data.get("model", data)
    else:
        checkpoint = load_torch_checkpoint(file)
        d2 = checkpoint.get("model")
        if not (isinstance(d2, Mapping) and any(k.endswith(_D2_STEM) for k in d2)):
            return _from_raw_checkpoint(checkpoint, path, depth)
    return _from_detectron2(d2, path, depth)


def _from_raw_checkpoint(checkpoint: Mapping, path: str, depth: int) -> dict[str, torch.Tensor]:
    """Torchvision-layout checkpoint: the converter picks the query backbone and refuses incomplete ones."""
    state_dict = find_state_dict(checkpoint, path)
    d2, report = convert_state_dict(state_dict, path)
    _check_depth(report.depth, path, depth)
    backbone = {detectron2_to_torchvision(k): torch.from_numpy(v) for k, v in d2.items()}
    return {k: backbone[k] for k in expected_backbone_shapes(depth)}


def _from_detectron2(d2: Mapping, path: str, depth: int) -> dict[str, torch.Tensor]:
    """Detectron2 names (optionally under one prefix such as `backbone.`) back to torchvision names."""
    prefixes = sorted({k[: -len(_D2_STEM)] for k in d2 if k.endswith(_D2_STEM)})
    if len(prefixes) != 1:
        found = f"several, under prefixes {prefixes}" if prefixes else "none"
        raise PretrainError(
            f"MODEL.WEIGHTS {path} is a Detectron2 weight file but holds {found} ResNet backbones (keys "
            f"'<prefix>{_D2_STEM}'); expected exactly one. Convert the original checkpoint with "
            "`python -m transfer.convert IN OUT.pkl` and pass OUT.pkl."
        )
    prefix = prefixes[0]
    backbone = {}
    for key, value in d2.items():
        if key.startswith(prefix) and key.startswith(("stem.", "res"), len(prefix)):
            backbone[detectron2_to_torchvision(key[len(prefix) :])] = _to_tensor(value)
    found = detectron2_resnet_depth([k for k in d2 if k.startswith(prefix)])
    if found is not None:
        _check_depth(found, path, depth)
    expected = expected_backbone_shapes(depth)
    missing = sorted(set(expected) - set(backbone))
    if missing:
        shown = ", ".join(missing[:6]) + (f", ... (+{len(missing) - 6})" if len(missing) > 6 else "")
        raise PretrainError(
            f"MODEL.WEIGHTS {path}: {len(missing)} of the {len(expected)} tensors of a torchvision "
            f"ResNet-{depth} backbone are missing ({shown}). Set MODEL.ARCH to the checkpoint's "
            "architecture, or convert the complete original checkpoint with `python -m transfer.convert`."
        )
    wrong = [f"{k} {tuple(backbone[k].shape)} != {v}" for k, v in expected.items() if backbone[k].shape != v]
    if wrong:
        raise PretrainError(
            f"MODEL.WEIGHTS {path}: {len(wrong)} tensors do not have the shapes of a torchvision "
            f"ResNet-{depth} ({'; '.join(wrong[:3])}). Set MODEL.ARCH to the checkpoint's architecture."
        )
    return {k: backbone[k] for k in expected}


def _check_depth(found: int, path: str, depth: int) -> None:
    if found != depth:
        raise PretrainError(
            f"MODEL.WEIGHTS {path} holds a ResNet-{found} backbone but MODEL.ARCH is resnet{depth}; "
            f"set MODEL.ARCH resnet{found}."
        )


def _to_tensor(value) -> torch.Tensor:
    """A float32 tensor from a numpy array (Detectron2 .pkl) or a tensor (Detectron2 .pth), copied."""
    if isinstance(value, torch.Tensor):
        return value.detach().float().clone()
    return torch.from_numpy(np.array(value, dtype=np.float32))
