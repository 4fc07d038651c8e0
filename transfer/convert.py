"""Convert any ResNet checkpoint into a Detectron2 weight pickle, with a key-match report.

`python -m transfer.convert IN OUT.pkl [--depth auto|18|34|50|101|152] [--prefix P] [--allow-unexpected]`

Accepted layouts (transfer/README.md "Convert"): our pretraining checkpoints (`encoder_q.backbone.*` under
"state_dict" or "model"; supervised: plain torchvision keys with `fc.*`), official DenseCL releases
(prefix-free backbone, possibly under "state_dict"), MoCo `.pth.tar` (`module.encoder_q.*`), torchvision
state dicts and Lightning-style wrappers (`model.`/`backbone.` prefixes). Only the query backbone is
kept: the key (momentum) encoder, projection heads, queues and the classifier are dropped and listed.
Tensors under the backbone prefix that a plain ResNet lacks (an SE block, ...) refuse the conversion
unless `--allow-unexpected` is given.
"""

import argparse
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from transfer.checkpoint_io import load_torch_checkpoint, write_weight_pickle
from transfer.errors import TransferError
from transfer.resnet_layout import (
    SUPPORTED_DEPTHS,
    expected_backbone_shapes,
    infer_depth,
    torchvision_to_detectron2,
)

# Wrapper keys under which trainers store the weights (MoCo/DenseCL/Lightning "state_dict", ours and
# Detectron2 "model", pycls "model_state").
_CONTAINER_KEYS = ("state_dict", "model", "model_state", "module", "net", "network")
# Words that mark a momentum (key/teacher/target/EMA) encoder, never the weights to transfer, when they
# are a `_`-separated part of a key component: MoCo `encoder_k`, solo-learn `momentum_backbone`, lightly
# `backbone_momentum`, MoCo v3 `momentum_encoder`, BYOL `target_network`, DINO `teacher`, timm `model_ema`.
_MOMENTUM_WORDS = {"momentum", "teacher", "target", "ema"}
# Top-level modules of a torchvision ResNet: a tensor inside them that the ResNet lacks is a layer it
# does not have.
_RESNET_MODULES = {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}
_OUTSIDE = "outside the backbone"


@dataclass
class ConversionReport:
    """What a conversion kept, dropped and could not place."""

    source: str
    output: str
    prefix: str
    depth: int
    converted: int = 0
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> keys
    unexpected: list[str] = field(default_factory=list)  # under the backbone prefix, not a ResNet key

    def format(self) -> str:
        lines = [
            f"converted {self.source} -> {self.output}",
            f"  ResNet-{self.depth} backbone under prefix {self.prefix or '(none)'!r}: "
            f"{self.converted} tensors converted (BN running stats included, num_batches_tracked dropped)",
        ]
        for reason, keys in sorted(self.dropped.items()):
            lines.append(f"  dropped {len(keys):5d} {reason}: {_preview(keys)}")
        lines.append(f"  unexpected {len(self.unexpected)}: {_preview(self.unexpected) or '-'}")
        return "\n".join(lines)


def _preview(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... (+{len(keys) - n})" if len(keys) > n else "")


def find_state_dict(checkpoint: Mapping, source: str) -> dict[str, torch.Tensor]:
    """The flat name -> tensor mapping inside a checkpoint, descending through wrapper keys."""
    node = checkpoint
    for _ in range(3):
        tensors = {k: v for k, v in node.items() if isinstance(v, torch.Tensor)}
        if any(k.endswith("conv1.weight") for k in tensors):
            return tensors
        inner = next((node[k] for k in _CONTAINER_KEYS if isinstance(node.get(k), Mapping)), None)
        if inner is None:
            break
        node = inner
    raise TransferError(
        f"Checkpoint {source} holds no ResNet weights: no '*conv1.weight' tensor at the top level or under "
        f"{', '.join(repr(k) for k in _CONTAINER_KEYS)}. Top-level keys: {_preview(sorted(checkpoint))}. "
        "Expected a torchvision-layout ResNet state dict (conv1, bn1, layer1..layer4)."
    )


def is_key_encoder(key: str) -> bool:
    """Whether `key` lies in a key/momentum encoder: a component `encoder_k` or one with a word of
    _MOMENTUM_WORDS between underscores (`momentum_encoder`, `target_network`; not `schema`, `emanet`)."""
    return any(
        part == "encoder_k" or not _MOMENTUM_WORDS.isdisjoint(part.split("_")) for part in key.split(".")
    )


def choose_prefix(keys: set[str], source: str, prefix: str | None = None) -> str:
    """The prefix under which a query/online ResNet backbone lives (`conv1.weight` + `layer1.0.*`)."""
    if prefix is not None:
        if prefix + "conv1.weight" not in keys:
            raise TransferError(f"Checkpoint {source} has no '{prefix}conv1.weight'; check --prefix.")
        return prefix
    candidates = sorted(
        k[: -len("conv1.weight")]
        for k in keys
        if k.endswith("conv1.weight") and k[: -len("conv1.weight")] + "layer1.0.conv1.weight" in keys
    )
    online = [p for p in candidates if not is_key_encoder(p)]
    if len(online) == 1:
        return online[0]
    if not online:
        raise TransferError(
            f"Checkpoint {source} is not a ResNet checkpoint: no prefix P with both 'Pconv1.weight' and "
            f"'Player1.0.conv1.weight' outside a key/momentum encoder (found {candidates or 'none'}). "
            "Expected a torchvision-layout ResNet (conv1, bn1, layer1..layer4)."
        )
    raise TransferError(
        f"Checkpoint {source} holds several ResNet backbones under prefixes {online} and none is marked "
        "as a key/momentum encoder; choose the one to transfer with `python -m transfer.convert "
        f"{shlex.quote(source)} OUT.pkl --prefix {shlex.quote(online[0])}` (or another of the prefixes) "
        "and fine-tune with MODEL.WEIGHTS OUT.pkl."
    )


def _drop_reason(key: str, prefix: str) -> str:
    if is_key_encoder(key):
        return "key (momentum) encoder"
    if "queue" in key:
        return "queues"
    if key.startswith(prefix + "fc.") or key.startswith("fc."):
        return "fc classifier"
    if any(head in key for head in ("head", "projector", "predictor", "prototypes")):
        return "heads"
    return _OUTSIDE


def _is_unexpected(key: str, prefix: str) -> bool:
    """A tensor under the backbone prefix that a plain ResNet lacks: inside the ResNet's modules (an SE
    block's `layer1.0.se.fc1.weight`) or not recognisably a classifier, head, queue or key encoder."""
    if not key.startswith(prefix):
        return False
    return key[len(prefix) :].split(".")[0] in _RESNET_MODULES or _drop_reason(key, prefix) == _OUTSIDE


def _unexpected_error(source: str, report: ConversionReport) -> TransferError:
    return TransferError(
        f"Checkpoint {source}: {len(report.unexpected)} tensors under the backbone prefix {report.prefix!r} "
        f"are not part of a torchvision ResNet-{report.depth} ({_preview(report.unexpected)}). "
        "The checkpoint holds layers a plain ResNet does not have (SE or attention blocks, a modified "
        "stem, ...); Detectron2's ResNet cannot represent them, so fine-tuning would run without them. If "
        f"that is intended, convert with `python -m transfer.convert {shlex.quote(source)} OUT.pkl "
        "--allow-unexpected` and fine-tune with MODEL.WEIGHTS OUT.pkl."
    )


def convert_state_dict(
    state_dict: dict[str, torch.Tensor],
    source: str,
    depth: int | str = "auto",
    prefix: str | None = None,
    allow_unexpected: bool = False,
) -> tuple[dict[str, np.ndarray], ConversionReport]:
    """Detectron2-named numpy arrays of the query ResNet backbone, and the report. Refuses incomplete
    backbones, wrong shapes, non-ResNets and, unless `allow_unexpected`, unexpected tensors under the
    backbone prefix with a TransferError."""
    prefix = choose_prefix(set(state_dict), source, prefix)
    backbone = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    inferred = infer_depth(set(backbone))
    if inferred is None:
        raise TransferError(
            f"Checkpoint {source}: the weights under prefix {prefix!r} do not match the block structure of "
            f"any ResNet depth {SUPPORTED_DEPTHS} (torchvision BasicBlock/Bottleneck layout)."
        )
    if depth != "auto" and int(depth) != inferred:
        raise TransferError(
            f"Checkpoint {source} holds a ResNet-{inferred} backbone, but --depth {depth} was requested; "
            "pass --depth auto or the right depth."
        )
    expected = expected_backbone_shapes(inferred)
    missing = sorted(set(expected) - set(backbone))
    if missing:
        raise TransferError(
            f"Checkpoint {source}: the ResNet-{inferred} backbone under prefix {prefix!r} is incomplete, "
            f"{len(missing)} of {len(expected)} tensors missing ({_preview(missing)}). Expected every "
            "torchvision ResNet key; was the checkpoint saved before training finished or filtered?"
        )
    wrong = [
        f"{k} {tuple(backbone[k].shape)} != {expected[k]}"
        for k in sorted(expected)
        if tuple(backbone[k].shape) != expected[k]
    ]
    if wrong:
        raise TransferError(
            f"Checkpoint {source}: {len(wrong)} backbone tensors have the wrong shape for a torchvision "
            f"ResNet-{inferred} ({_preview(wrong, 3)}). A widened or modified ResNet cannot be loaded into "
            "Detectron2's ResNet."
        )
    model = {torchvision_to_detectron2(k): backbone[k].detach().float().numpy() for k in sorted(expected)}
    report = ConversionReport(source=source, output="", prefix=prefix, depth=inferred, converted=len(model))
    for key in sorted(state_dict):
        if (key.startswith(prefix) and key[len(prefix) :] in expected) or key.endswith("num_batches_tracked"):
            continue
        if _is_unexpected(key, prefix):
            report.unexpected.append(key)
        else:
            report.dropped.setdefault(_drop_reason(key, prefix), []).append(key)
    if report.unexpected and not allow_unexpected:
        raise _unexpected_error(source, report)
    return model, report


def convert_checkpoint(
    in_path: str | Path,
    out_path: str | Path,
    depth: int | str = "auto",
    prefix: str | None = None,
    allow_unexpected: bool = False,
) -> ConversionReport:
    """Read `in_path` safely, convert its query ResNet backbone and write the Detectron2 pickle."""
    checkpoint = load_torch_checkpoint(in_path)
    state_dict = find_state_dict(checkpoint, str(in_path))
    model, report = convert_state_dict(
        state_dict, str(in_path), depth=depth, prefix=prefix, allow_unexpected=allow_unexpected
    )
    write_weight_pickle(model, out_path)
    report.output = str(out_path)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m transfer.convert", description=__doc__.splitlines()[0])
    parser.add_argument("input", help="checkpoint (.pth, .pth.tar, .ckpt)")
    parser.add_argument("output", help="Detectron2 weight pickle to write (.pkl)")
    parser.add_argument("--depth", default="auto", choices=["auto", *map(str, SUPPORTED_DEPTHS)])
    parser.add_argument("--prefix", default=None, help="backbone key prefix (default: detected)")
    parser.add_argument(
        "--allow-unexpected",
        action="store_true",
        help="convert even if tensors under the prefix are not part of a plain ResNet (they are dropped)",
    )
    args = parser.parse_args(argv)
    if not args.output.endswith(".pkl"):
        print(
            f"error: output {args.output} must end with .pkl (Detectron2 reads weight pickles by suffix).",
            file=sys.stderr,
        )
        return 2
    try:
        report = convert_checkpoint(
            args.input,
            args.output,
            depth=args.depth,
            prefix=args.prefix,
            allow_unexpected=args.allow_unexpected,
        )
    except TransferError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
