"""Check MODEL.WEIGHTS before training: present, safe to read, a ResNet of the configured depth, and
for torchvision-layout weights, a config with the input they were trained on.

A URL is downloaded first (Detectron2's PathManager cache) and then treated as the local file. A
Detectron2 `.pkl` is read with the array-only unpickler; a raw PyTorch checkpoint (pretraining output,
MoCo/DenseCL release, torchvision) that is not a Detectron2 checkpoint is converted on the fly into
OUTPUT_DIR/converted_weights.pkl with the same converter as `python -m transfer.convert`.
"""

import re
from functools import reduce
from pathlib import Path

import numpy as np
from detectron2.utils.file_io import PathManager

from transfer.checkpoint_io import load_torch_checkpoint, load_weight_pickle
from transfer.convert import convert_checkpoint
from transfer.errors import TransferError

_CONVERT_HINT = "Convert a ResNet checkpoint with `python -m transfer.convert IN OUT.pkl` and pass OUT.pkl."
# `__author__` of Detectron2 weight pickles that hold a torchvision-layout ResNet: ours (transfer.convert),
# Detectron2's tools/convert-torchvision-to-d2.py, MoCo's and DenseCL's (written by OpenSelfSup's script)
# detection conversion scripts.
TORCHVISION_LAYOUT_AUTHORS = {"densebench", "torchvision", "MOCO", "OpenSelfSup"}
# The input a torchvision-layout ResNet expects (transfer/README.md "Convert"; the `*_ssl.yaml` configs):
# RGB, torchvision's ImageNet mean/std in 0-255, the stride-2 conv of a bottleneck in its 3x3 conv.
TORCHVISION_INPUT = {
    "INPUT.FORMAT": "RGB",
    "MODEL.PIXEL_MEAN": [123.675, 116.28, 103.53],
    "MODEL.PIXEL_STD": [58.395, 57.12, 57.375],
    "MODEL.RESNETS.STRIDE_IN_1X1": False,
}


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


def _cfg_value(cfg, key: str):
    return reduce(getattr, key.split("."), cfg)


def _matches(value, expected) -> bool:
    if isinstance(expected, list):
        return len(value) == len(expected) and np.allclose(value, expected, atol=1e-3)
    return value == expected


def _torchvision_override(key: str) -> str:
    """`KEY VALUE` of TORCHVISION_INPUT as train_net takes it on the command line (lists quoted)."""
    value = TORCHVISION_INPUT[key]
    return f"{key} '{value}'" if isinstance(value, list) else f"{key} {value}"


def check_torchvision_input(cfg, weights: str, origin: str) -> None:
    """Raise TransferError unless `cfg` feeds torchvision-layout weights the input they expect."""
    wrong = [key for key, value in TORCHVISION_INPUT.items() if not _matches(_cfg_value(cfg, key), value)]
    if not wrong:
        return
    found = ", ".join(f"{key} {_cfg_value(cfg, key)}" for key in wrong)
    fix = " ".join(_torchvision_override(key) for key in wrong)
    raise TransferError(
        f"MODEL.WEIGHTS {weights} is a torchvision-layout ResNet ({origin}), which expects RGB input "
        "normalised with torchvision's ImageNet mean/std and the stride in the 3x3 conv "
        f"(MODEL.RESNETS.STRIDE_IN_1X1 False), but the config has {found}. Use the `*_ssl.yaml` config "
        f"of the task (transfer/configs/) or set `{fix}`."
    )


def _fetch_error(url: str, reason: str) -> TransferError:
    return TransferError(
        f"MODEL.WEIGHTS {url} could not be fetched ({reason}). Download it yourself and pass the local "
        "path as MODEL.WEIGHTS; it is checked and, if needed, converted like any local file."
    )


def fetch_weights(url: str) -> str:
    """Local copy of the MODEL.WEIGHTS `url` (Detectron2's PathManager: http(s), detectron2://, ...)."""
    try:
        local = PathManager.get_local_path(url)
    except (OSError, ValueError) as exc:
        raise _fetch_error(url, f"{type(exc).__name__}: {exc}") from exc
    if not Path(local).is_file():  # a scheme without a PathManager handler comes back unchanged
        raise _fetch_error(url, "no handler for its scheme")
    return local


def resolve_weights(cfg) -> tuple[str, str]:
    """(path to load for cfg.MODEL.WEIGHTS, a note for the user); raises TransferError if unusable.

    The path differs from MODEL.WEIGHTS when a URL was downloaded or a raw checkpoint converted."""
    weights, depth = cfg.MODEL.WEIGHTS, cfg.MODEL.RESNETS.DEPTH
    if not weights:
        return weights, "MODEL.WEIGHTS is empty: random initialisation"
    local = fetch_weights(weights) if "://" in weights else weights
    path = Path(local)
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
        author = data.get("__author__")
        if author in TORCHVISION_LAYOUT_AUTHORS:
            check_torchvision_input(cfg, weights, f"a weight pickle written by {author!r}")
        return local, ""
    checkpoint = load_torch_checkpoint(path)
    model = checkpoint.get("model")
    if isinstance(model, dict) and any(k.endswith("stem.conv1.weight") for k in model):
        _check_depth(weights, list(model), depth)  # a Detectron2 checkpoint (e.g. model_final.pth)
        return local, ""
    out = Path(cfg.OUTPUT_DIR) / "converted_weights.pkl"
    report = convert_checkpoint(path, out)
    if report.depth != depth:
        raise TransferError(
            f"MODEL.WEIGHTS {weights} holds a ResNet-{report.depth} but MODEL.RESNETS.DEPTH is {depth}; set "
            f"MODEL.RESNETS.DEPTH {report.depth} or pass weights of the configured depth."
        )
    check_torchvision_input(cfg, weights, "a raw checkpoint, converted on the fly")
    return str(out), "MODEL.WEIGHTS is a raw checkpoint, converted for Detectron2:\n" + report.format()
