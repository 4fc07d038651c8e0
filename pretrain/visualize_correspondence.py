"""Draw DenseCL-style dense correspondences between two random views of one image.

`python -m pretrain.visualize_correspondence CKPT IMAGE --out x.png [--threshold 0.9 --size 224 --seed 0]`

Two MoCo-v2 views of IMAGE go through the query backbone of CKPT (model_final.pth of a DenseCL or
MoCo-v2 run); cells of the two C5 maps that are mutual nearest neighbours by cosine similarity above
the threshold are joined by lines between the cell centres (DenseCL paper, Fig. 4; the authors keep
mutual matches with similarity > ~0.9).
"""

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint
from .config import get_cfg
from .data import load_rgb, mocov2_view_transform
from .errors import PretrainError
from .modules import ResNetTrunk

PREFIX = "encoder_q.backbone."


def load_backbone(path: Path) -> tuple[ResNetTrunk, dict]:
    """The query backbone of a densecl/mocov2 model_final.pth, in eval mode."""
    ckpt = checkpoint.load(path, fix="pass the model_final.pth of a finished densecl or mocov2 run")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "meta" not in ckpt:
        raise PretrainError(f"{path} is not a model_final.pth (expected keys 'state_dict' and 'meta').")
    meta = ckpt["meta"]
    weights = {k[len(PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)}
    if meta.get("method") not in ("densecl", "mocov2") or not weights:
        raise PretrainError(
            f"{path} holds a {meta.get('method')!r} model; the correspondence tool needs a densecl or mocov2 "
            f"model_final.pth with '{PREFIX}*' keys."
        )
    try:
        backbone = ResNetTrunk(meta["arch"])
        backbone.load_state_dict(weights)
    except (KeyError, ValueError, RuntimeError) as e:
        raise PretrainError(
            f"{path}: its meta 'arch' ({meta.get('arch')!r}) and '{PREFIX}*' weights do not make a ResNet "
            f"trunk ({e}). Expected a model_final.pth written by pretrain.train_net for a torchvision ResNet."
        ) from e
    return backbone.eval(), meta


def mutual_matches(f1: torch.Tensor, f2: torch.Tensor, threshold: float) -> list[tuple[int, int, float]]:
    """(cell in view 1, cell in view 2, cosine) for mutual nearest neighbours above threshold. f: (C, P)."""
    sim = F.normalize(f1, dim=0).t() @ F.normalize(f2, dim=0)  # (P1, P2)
    best12, best21 = sim.argmax(dim=1), sim.argmax(dim=0)
    return [
        (i, int(j), float(sim[i, j]))
        for i, j in enumerate(best12.tolist())
        if best21[j] == i and sim[i, j] > threshold
    ]


def cell_centres(h: int, w: int, size: int) -> np.ndarray:
    """Pixel (x, y) of each C5 cell centre in a size x size view, row-major (P, 2)."""
    ys, xs = np.meshgrid((np.arange(h) + 0.5) * size / h, (np.arange(w) + 0.5) * size / w, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def draw(args) -> int:
    backbone, meta = load_backbone(Path(args.checkpoint))
    cfg = get_cfg()
    cfg.DATA.IMAGE_SIZE = args.size
    transform = mocov2_view_transform(cfg)
    img = load_rgb(args.image)
    torch.manual_seed(args.seed)
    views = torch.stack([transform(img), transform(img)])  # (2, 3, S, S)
    with torch.no_grad():
        c5 = backbone(views)  # (2, C, H, W)
    if not torch.isfinite(c5).all():
        raise PretrainError(
            f"{args.checkpoint}: the C5 features of its query backbone are not finite (NaN or inf), so the "
            "run diverged. Draw from an earlier checkpoint (model_*.pth in the run's OUTPUT_DIR) or retrain "
            "with a lower SOLVER.BASE_LR or a larger batch per BN group."
        )
    _, _, h, w = c5.shape
    matches = mutual_matches(c5[0].flatten(1), c5[1].flatten(1), args.threshold)
    mean = torch.tensor(cfg.DATA.MEAN).view(3, 1, 1)
    std = torch.tensor(cfg.DATA.STD).view(3, 1, 1)
    pictures = [(v * std + mean).clamp(0, 1).permute(1, 2, 0).numpy() for v in views]
    centres = cell_centres(h, w, args.size)
    fig, ax = plt.subplots(figsize=(8, 4.4))
    ax.imshow(np.concatenate(pictures, axis=1))
    cmap = plt.get_cmap("viridis")
    for i, j, s in matches:
        (x1, y1), (x2, y2) = centres[i], centres[j]
        ax.plot(
            [x1, x2 + args.size],
            [y1, y2],
            "-o",
            color=cmap((s - args.threshold) / max(1e-6, 1 - args.threshold)),
            lw=1,
            ms=3,
        )
    ax.set_title(
        f"{meta['method']} {meta['arch']}: {len(matches)} mutual matches of {h * w} C5 cells, "
        f"cos > {args.threshold}"
    )
    ax.axis("off")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"{out}: {len(matches)} matches")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", help="model_final.pth of a densecl or mocov2 run")
    parser.add_argument("image", help="an RGB image file")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--threshold", type=float, default=0.9, help="minimum cosine similarity of a match")
    parser.add_argument("--size", type=int, default=224, help="view crop size in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the two random views")
    args = parser.parse_args(argv)
    try:
        return draw(args)
    except PretrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
