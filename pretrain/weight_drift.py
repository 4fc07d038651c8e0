"""How far pretraining moved each ResNet stage from its initialisation.

    python -m pretrain.weight_drift output/tiny/pretrain/densecl_coco [more run directories]

A run directory holds `config.yaml` and `model_final.pth` (pretrain.train_net). The initial weights are
rebuilt exactly as the engine drew them (the same seed, then `build_model`), so run this with the code that
trained the run. For each stage (stem, res2..res5) it prints the relative change ||w - w0|| / ||w0|| of the
query backbone's convolutions and their cosine to the initialisation. A run whose res2..res5 moved by a few
percent still is, for fine-tuning, close to its random initialisation (benchmarks/README.md, `tiny`).
"""

import argparse
import re
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from . import checkpoint
from .config import load_cfg
from .engine import seed_everything
from .errors import PretrainError
from .methods import build_model

_LAYER = re.compile(r"(?:^|\.)layer([1-4])\.")


def initial_state(cfg, num_classes: int) -> dict[str, torch.Tensor]:
    """The exported state dict the engine's model had before its first step (cfg.SEED, rank 0)."""
    seed_everything(cfg.SEED)
    model = build_model(cfg, num_classes=num_classes)
    return model.export_state_dict()


def stage(key: str) -> str:
    """stem / res2..res5 of a torchvision ResNet key (any prefix)."""
    match = _LAYER.search(key)
    return f"res{int(match.group(1)) + 1}" if match else "stem"


def is_backbone_conv(key: str, tensor: torch.Tensor) -> bool:
    """A convolution of the exported backbone: the query encoder's, or the supervised ResNet's."""
    return tensor.ndim == 4 and key.removeprefix("encoder_q.backbone.").startswith(("conv1.", "layer"))


def drift(run_dir: Path) -> dict[str, tuple[float, float]]:
    """stage -> (relative L2 change, cosine to the initialisation) over the backbone's conv weights."""
    config, final = run_dir / "config.yaml", run_dir / "model_final.pth"
    for path in (config, final):
        if not path.is_file():
            raise PretrainError(f"{path} does not exist; expected a finished pretrain.train_net OUTPUT_DIR.")
    cfg = load_cfg(str(config), [])
    ckpt = checkpoint.load(final, fix="pass the OUTPUT_DIR of a finished run")
    if "state_dict" not in ckpt:
        raise PretrainError(f"{final} has no 'state_dict'; expected a model_final.pth of pretrain.train_net")
    trained = ckpt["state_dict"]
    num_classes = trained["fc.weight"].shape[0] if "fc.weight" in trained else 0
    init = initial_state(cfg, num_classes)
    pairs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for key, weight in trained.items():
        if not is_backbone_conv(key, weight):
            continue
        if key not in init or init[key].shape != weight.shape:
            raise PretrainError(
                f"{config} does not build the model saved in {final} ({key}); both must come from one run."
            )
        pairs.setdefault(stage(key), []).append((init[key].flatten().float(), weight.flatten().float()))
    out = {}
    for name in sorted(pairs, key=lambda s: (s != "stem", s)):
        w0 = torch.cat([a for a, _ in pairs[name]])
        w = torch.cat([b for _, b in pairs[name]])
        out[name] = (float((w - w0).norm() / w0.norm()), float(F.cosine_similarity(w, w0, dim=0)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="pretraining OUTPUT_DIRs")
    args = parser.parse_args(argv)
    try:
        for run in args.runs:
            stages = drift(run)
            print(
                f"{run}: " + "  ".join(f"{s} {rel:.3f} (cos {cos:.3f})" for s, (rel, cos) in stages.items())
            )
    except PretrainError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
