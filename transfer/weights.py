"""Check MODEL.WEIGHTS before training: present, safe to read, a ResNet of the configured depth.

A Detectron2 `.pkl` is read with the array-only unpickler; a raw PyTorch checkpoint (pretraining output,
MoCo/DenseCL release, torchvision) that is not a Detectron2 checkpoint is converted on the fly into
OUTPUT_DIR/converted_weights.pkl with the same converter as `python -m transfer.convert`.
"""

import re
from pathlib import Path

from transfer.checkpoint_io import load_torch_checkpoint, load_weight_pickle
from transfer.convert import convert_checkpoint
from transfer.errors import TransferError

_CONVERT_HINT = "Convert a ResNet checkpoint with `python -m transfer.convert IN OUT.pkl` and pass OUT.pkl."


def detectron2_resnet_depth(keys: list[str]) -> int | None:
    """Depth of the Detectron2-named ResNet in `keys` (any prefix), None if there is none."""
    if not any(k.endswith("stem.conv1.weight") for k in keys):
        return None
    blocks = {}
    for key in keys:
        if match := re.search(r"(?:^|\.)res([2-5])\.(\d+)\.", key):
            stage, block = int(match.group(1)), int(match.group(2))
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    bottleneck = any(re.search(r"(?:^|\.)res2\.0\.conv3\.weight$", k) for k in keys)
    return {(False, 2): 18, (False, 6): 34, (True, 6): 50, (True, 23): 101, (True, 36): 152}.get(
        (bottleneck, blocks.get(4, 0))
    )


def _check_depth(path: str, keys: list[str], depth: int) -> None:
    found = detectron2_resnet_depth(keys)
    if found is None:
        raise TransferError(
            f"MODEL.WEIGHTS {path} holds no Detectron2 ResNet (no 'stem.conv1.weight'). {_CONVERT_HINT}"
        )
    if found != depth:
        width = " MODEL.RESNETS.RES2_OUT_CHANNELS 64" if found < 50 else ""
        raise TransferError(
            f"MODEL.WEIGHTS {path} holds a ResNet-{found} but MODEL.RESNETS.DEPTH is {depth}; set "
            f"`MODEL.RESNETS.DEPTH {found}{width}` or pass weights of the configured depth."
        )


def resolve_weights(weights: str, depth: int, output_dir: str) -> tuple[str, str]:
    """(path to load for MODEL.WEIGHTS, a note for the user); raises TransferError if unusable.

    The path differs from `weights` only when a raw checkpoint was converted."""
    if not weights:
        return weights, "MODEL.WEIGHTS is empty: random initialisation"
    if "://" in weights:
        return weights, ""  # Detectron2 resolves model-zoo and http URLs itself
    path = Path(weights)
    if not path.is_file():
        raise TransferError(
            f"MODEL.WEIGHTS {weights} does not exist. Expected a Detectron2 .pkl (from `python -m "
            "transfer.convert`), a Detectron2 .pth checkpoint or a ResNet .pth to convert; fix the path "
            "or pass MODEL.WEIGHTS '' for random initialisation."
        )
    if path.suffix == ".pkl":
        data = load_weight_pickle(path)
        keys = list(data.get("model", data))
        if "conv1_w" not in keys:  # Caffe2/Detectron1 names (MSRA R-50.pkl) are renamed by Detectron2
            _check_depth(weights, keys, depth)
        return weights, ""
    checkpoint = load_torch_checkpoint(path)
    model = checkpoint.get("model")
    if isinstance(model, dict) and any(k.endswith("stem.conv1.weight") for k in model):
        _check_depth(weights, list(model), depth)  # a Detectron2 checkpoint (e.g. model_final.pth)
        return weights, ""
    out = Path(output_dir) / "converted_weights.pkl"
    report = convert_checkpoint(path, out)
    if report.depth != depth:
        raise TransferError(
            f"MODEL.WEIGHTS {weights} holds a ResNet-{report.depth} but MODEL.RESNETS.DEPTH is {depth}; set "
            f"MODEL.RESNETS.DEPTH {report.depth} or pass weights of the configured depth."
        )
    return str(out), "MODEL.WEIGHTS is a raw checkpoint, converted for Detectron2:\n" + report.format()
