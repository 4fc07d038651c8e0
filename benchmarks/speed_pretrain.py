"""Pretraining speed: DenseCL vs MoCo-v2 training steps side by side, and the data pipeline's images/s.

`python -m benchmarks.speed_pretrain [--arch resnet18 --batch 32 --size 64 --iters 10 --device cpu]`
(`--amp-cpu`: bfloat16 autocast on CPU, as TRAIN.AMP_CPU; run with and without it for the speed-up)

Both models get the same backbone, batch and input, and one-process shuffle-BN as the engine builds it
(`--bn-splits`, default 2 = the tiny profile's MODEL.SHUFFLE_BN_SPLITS; 1 = plain BatchNorm). A step is
forward + backward + SGD step (key encoder EMA and enqueue included). After warm-up the two methods run
interleaved (alternating which goes first) and the medians are compared; the DenseCL paper reports
DenseCL "<1%" slower on 8 V100.
The data pipeline is timed in one process: JPEG decode + two MoCo-v2 views per image.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pretrain.config import get_cfg
from pretrain.data import ImageListDataset, TwoCropsTransform, mocov2_view_transform
from pretrain.methods import build_model
from pretrain.split_bn import split_encoders_batch_norm
from transfer.runtime import cpu_has_native_bf16


def make_cfg(method: str, args):
    cfg = get_cfg()
    cfg.MODEL.METHOD, cfg.MODEL.ARCH, cfg.MODEL.HIDDEN_DIM = method, args.arch, 0
    cfg.MODEL.QUEUE_SIZE, cfg.DATA.IMAGE_SIZE = args.queue, args.size
    cfg.MODEL.DENSECL.GRID_SIZE = args.grid or max(1, args.size // 32)
    return cfg


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(args, device: torch.device) -> dict[str, float]:
    """Median seconds per training step for each method."""
    gen = torch.Generator().manual_seed(0)
    views = [torch.randn(args.batch, 3, args.size, args.size, generator=gen).to(device) for _ in range(2)]
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    views = [v.contiguous(memory_format=fmt) for v in views]
    runners = {}
    for method in ("mocov2", "densecl"):
        torch.manual_seed(0)
        model = build_model(make_cfg(method, args))
        if args.bn_splits > 1:
            split_encoders_batch_norm(model, args.bn_splits)
        model = model.to(device, memory_format=fmt).train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=0.03, momentum=0.9, fused=True)  # as the engine
        runners[method] = (model, opt)
    amp = args.amp if device.type == "cuda" else args.amp_cpu and cpu_has_native_bf16()

    def step(method: str) -> float:
        model, opt = runners[method]
        sync(device)
        tic = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = model(*views)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        return time.perf_counter() - tic

    for _ in range(args.warmup):
        for method in runners:
            step(method)
    times = {method: [] for method in runners}
    for r in range(args.iters):
        for method in list(runners)[:: 1 if r % 2 == 0 else -1]:
            times[method].append(step(method))
    return {method: statistics.median(t) for method, t in times.items()}, amp


def data_images_per_s(args) -> float:
    """Images/s of decode + two-crop augmentation in this process (multiply by workers for a loader)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.image_dir) if args.image_dir else Path(tmp)
        if not args.image_dir:
            rng = np.random.default_rng(0)
            for i in range(16):
                base = rng.integers(0, 255, (38, 50, 3), dtype=np.uint8)  # ImageNet-like 500 x 375 photos
                Image.fromarray(base).resize((500, 375), Image.Resampling.BICUBIC).save(folder / f"{i}.jpg")
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        cfg = get_cfg()
        cfg.DATA.IMAGE_SIZE = args.size
        ds = ImageListDataset([(p, -1) for p in paths], TwoCropsTransform(mocov2_view_transform(cfg)))
        ds[0]
        tic = time.perf_counter()
        for i in range(args.data_images):
            ds[i % len(ds)]
        return args.data_images / (time.perf_counter() - tic)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="resnet18", help="torchvision ResNet name")
    parser.add_argument("--batch", type=int, default=32, help="images per step (per view)")
    parser.add_argument("--size", type=int, default=64, help="crop size in pixels")
    parser.add_argument("--iters", type=int, default=10, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per method first")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--queue", type=int, default=4096, help="queue size K")
    parser.add_argument(
        "--bn-splits", type=int, default=2, help="BN sub-batches on one process (MODEL.SHUFFLE_BN_SPLITS)"
    )
    parser.add_argument("--grid", type=int, default=0, help="DenseCL grid S (0 = native C5 size)")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 on CUDA (default bf16)")
    parser.add_argument(
        "--amp-cpu", action="store_true", help="bf16 autocast on CPU too, if native (TRAIN.AMP_CPU)"
    )
    parser.add_argument(
        "--image-dir", default="", help="time decoding these images instead of generated ones"
    )
    parser.add_argument("--data-images", type=int, default=200, help="images decoded for the data timing")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    medians, amp = time_steps(args, device)
    ratio = medians["densecl"] / medians["mocov2"]
    ips = data_images_per_s(args)
    print(
        f"device {device}, threads {torch.get_num_threads()}, {args.arch}, batch {args.batch}, "
        f"{args.size} px, {'bfloat16 autocast' if amp else 'fp32'}, BN over {args.bn_splits} sub-batch(es)"
    )
    for method, t in medians.items():
        print(f"  {method:8s} {t:.4f} s/iter  ({args.batch / t:.1f} images/s)")
    print(f"  DenseCL / MoCo-v2 step time: {ratio:.3f}  (paper: <1.01 on 8 V100, R-50, 224 px)")
    print(f"  data pipeline (decode + 2 views, 1 process): {ips:.1f} images/s")
    record = {
        "device": str(device), "arch": args.arch, "batch": args.batch, "size": args.size, "amp": amp,
        "bn_splits": args.bn_splits,
    }  # fmt: skip
    print(json.dumps({**record, "s_per_iter": medians, "ratio": ratio, "data_images_per_s": ips}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
