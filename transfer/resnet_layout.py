"""Torchvision ResNet key layout: expected keys and shapes per depth, and the rename to Detectron2.

Detectron2's ResNet (`detectron2/modeling/backbone/resnet.py`) names the stem `stem.conv1` with its norm
inside the conv (`stem.conv1.norm`), stages `res2..res5` (torchvision `layer1..layer4`), the convs of a
block `convK` with `convK.norm` and the projection `shortcut` (torchvision `downsample.0/1`).
"""

import re
from functools import cache

import torch
import torchvision

# Depth -> torchvision constructor. Blocks per stage (res2..res5): 18 [2,2,2,2], 34 [3,4,6,3] BasicBlock;
# 50 [3,4,6,3], 101 [3,4,23,3], 152 [3,8,36,3] Bottleneck (He et al., 2016, Table 1).
_CONSTRUCTORS = {
    18: torchvision.models.resnet18,
    34: torchvision.models.resnet34,
    50: torchvision.models.resnet50,
    101: torchvision.models.resnet101,
    152: torchvision.models.resnet152,
}
SUPPORTED_DEPTHS = tuple(_CONSTRUCTORS)
_BLOCKS_IN_LAYER3 = {(False, 2): 18, (False, 6): 34, (True, 6): 50, (True, 23): 101, (True, 36): 152}


@cache
def expected_backbone_shapes(depth: int) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a torchvision ResNet-`depth` state dict without `fc.*` and `num_batches_tracked`."""
    with torch.device("meta"):
        model = _CONSTRUCTORS[depth]()
    return {
        key: tuple(value.shape)
        for key, value in model.state_dict().items()
        if not key.startswith("fc.") and not key.endswith("num_batches_tracked")
    }


def infer_depth(keys: set[str]) -> int | None:
    """Depth from the block structure of prefix-free torchvision keys; None if it matches no ResNet."""
    bottleneck = "layer1.0.conv3.weight" in keys
    layer3_blocks = {int(m.group(1)) for k in keys if (m := re.match(r"layer3\.(\d+)\.", k))}
    if not layer3_blocks:
        return None
    return _BLOCKS_IN_LAYER3.get((bottleneck, max(layer3_blocks) + 1))


_STAGE = re.compile(r"^layer([1-4])\.(\d+)\.")


def torchvision_to_detectron2(key: str) -> str:
    """Rename one prefix-free torchvision ResNet key to Detectron2's ResNet naming.

    `conv1.weight` -> `stem.conv1.weight`, `bn1.*` -> `stem.conv1.norm.*`,
    `layer2.0.bn3.running_var` -> `res3.0.conv3.norm.running_var`,
    `layer1.0.downsample.0.weight` -> `res2.0.shortcut.weight`, `downsample.1.*` -> `shortcut.norm.*`.
    """
    if key.startswith("conv1."):
        return "stem." + key
    if key.startswith("bn1."):
        return "stem.conv1.norm." + key[len("bn1.") :]
    match = _STAGE.match(key)
    if match is None:
        raise KeyError(f"not a torchvision ResNet backbone key: {key!r}")
    stage, block = int(match.group(1)), match.group(2)
    rest = key[match.end() :]
    rest = re.sub(r"^bn(\d)\.", r"conv\1.norm.", rest)
    rest = re.sub(r"^downsample\.0\.", "shortcut.", rest)
    rest = re.sub(r"^downsample\.1\.", "shortcut.norm.", rest)
    return f"res{stage + 1}.{block}.{rest}"


_D2_STAGE = re.compile(r"^res([2-5])\.(\d+)\.")


def detectron2_to_torchvision(key: str) -> str:
    """The inverse of `torchvision_to_detectron2`: one prefix-free Detectron2 ResNet key to torchvision.

    `stem.conv1.norm.*` -> `bn1.*`, `res3.0.conv3.norm.running_var` -> `layer2.0.bn3.running_var`,
    `res2.0.shortcut.weight` -> `layer1.0.downsample.0.weight`, `shortcut.norm.*` -> `downsample.1.*`.
    """
    if key.startswith("stem.conv1.norm."):
        return "bn1." + key[len("stem.conv1.norm.") :]
    if key.startswith("stem.conv1."):
        return key[len("stem.") :]
    match = _D2_STAGE.match(key)
    if match is None:
        raise KeyError(f"not a Detectron2 ResNet backbone key: {key!r}")
    stage, block = int(match.group(1)), match.group(2)
    rest = key[match.end() :]
    rest = re.sub(r"^conv(\d)\.norm\.", r"bn\1.", rest)
    rest = re.sub(r"^shortcut\.norm\.", "downsample.1.", rest)
    rest = re.sub(r"^shortcut\.", "downsample.0.", rest)
    return f"layer{stage - 1}.{block}.{rest}"
