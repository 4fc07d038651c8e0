"""The training loop shared by every method: SGD or LARS (optim.py), per-iteration LR schedule, AMP, DDP,
checkpoints.

Schedule: cosine from the base LR to 0 over all iterations, no warm-up (MoCo-v2 / DenseCL), or the
step schedule of the supervised torchvision recipe. The LR is a pure function of the iteration, so a
resume only needs the iteration counter to restore it.
"""

import math
import random
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from transfer.bad_images import bad_images_file, skipped_images
from transfer.runtime import cpu_has_native_bf16
from transfer.wandb_logging import start_run

from . import checkpoint, dist
from .bad_images import pretrain_bad_image_log
from .data import ResumableDistributedSampler, build_dataset, returns_view_params
from .errors import PretrainError
from .methods import build_model
from .monitor import Monitor, setup_logging
from .optim import build_optimizer
from .split_bn import split_encoders_batch_norm


def resolve_device(cfg) -> torch.device:
    if cfg.TRAIN.DEVICE == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.TRAIN.DEVICE == "cuda" and not torch.cuda.is_available():
        raise PretrainError(
            "TRAIN.DEVICE is 'cuda' but no CUDA device is visible; use TRAIN.DEVICE cpu or auto."
        )
    if cfg.TRAIN.DEVICE not in ("cuda", "cpu"):
        raise PretrainError(f"TRAIN.DEVICE {cfg.TRAIN.DEVICE!r} is unknown; expected auto, cuda or cpu.")
    return torch.device(cfg.TRAIN.DEVICE)


def autocast_dtype(cfg, device: torch.device, logger) -> torch.dtype | None:
    """The autocast dtype of the forward pass, or None for fp32.

    CUDA: TRAIN.AMP with TRAIN.AMP_DTYPE. CPU: bfloat16 with TRAIN.AMP_CPU, only where oneDNN has native
    bfloat16 kernels (emulated bfloat16 would be slower than fp32).
    """
    if device.type == "cuda":
        if not cfg.TRAIN.AMP:
            return None
        if cfg.TRAIN.AMP_DTYPE not in ("bfloat16", "float16"):
            raise PretrainError(
                f"TRAIN.AMP_DTYPE {cfg.TRAIN.AMP_DTYPE!r} is unknown; use bfloat16 or float16."
            )
        return getattr(torch, cfg.TRAIN.AMP_DTYPE)
    if not cfg.TRAIN.AMP_CPU:
        return None
    if not cpu_has_native_bf16():
        logger.info("TRAIN.AMP_CPU: this CPU has no native bfloat16 (AVX512-BF16 / AMX); training in fp32")
        return None
    logger.info("TRAIN.AMP_CPU: bfloat16 autocast on CPU")
    return torch.bfloat16


def learning_rate(cfg, base_lr: float, iteration: int, max_iter: int, iters_per_epoch: int) -> float:
    """LR for `iteration` (0-based): cosine to 0 over max_iter, or x GAMMA at each epoch in STEPS."""
    if cfg.SOLVER.LR_SCHEDULER == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * iteration / max_iter))
    if cfg.SOLVER.LR_SCHEDULER == "step":
        epoch = iteration // iters_per_epoch
        return base_lr * cfg.SOLVER.GAMMA ** sum(epoch >= s for s in cfg.SOLVER.STEPS)
    raise PretrainError(f"SOLVER.LR_SCHEDULER {cfg.SOLVER.LR_SCHEDULER!r} is unknown; use cosine or step.")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Builds data, model and optimizer from a frozen cfg, restores `checkpoint_last.pth` on resume."""

    def __init__(self, cfg, resume: bool = False):
        self.cfg = cfg
        self.device = resolve_device(cfg)
        env = dist.init_distributed(self.device.type)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", env.local_rank)
        self.out_dir = Path(cfg.OUTPUT_DIR)
        self.is_main = dist.is_main_process()
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        dist.barrier()
        self.logger = setup_logging(self.out_dir, self.is_main)
        seed_everything(cfg.SEED + dist.get_rank())  # augmentations are seeded per image (data.py), not here

        world = dist.get_world_size()
        per_process = self._build_data(world)
        self.max_iter = cfg.SOLVER.MAX_ITERS or cfg.SOLVER.EPOCHS * self.iters_per_epoch
        if self.max_iter < 1:
            raise PretrainError("nothing to train: set SOLVER.EPOCHS or SOLVER.MAX_ITERS to at least 1.")

        self.model = self._build_model()
        self.base_lr = cfg.SOLVER.BASE_LR
        if cfg.SOLVER.REFERENCE_BATCH_SIZE > 0:
            self.base_lr = cfg.SOLVER.BASE_LR * cfg.SOLVER.BATCH_SIZE / cfg.SOLVER.REFERENCE_BATCH_SIZE
            self.logger.info(
                "linear LR scaling: %g x %d / %d = %g",
                cfg.SOLVER.BASE_LR, cfg.SOLVER.BATCH_SIZE, cfg.SOLVER.REFERENCE_BATCH_SIZE, self.base_lr,
            )  # fmt: skip
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(cfg, trainable, self.base_lr)
        self.amp_dtype = autocast_dtype(cfg, self.device, self.logger)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.start_iter = 0
        if resume:
            self.start_iter = self._resume()
        self.last_saved = self.start_iter  # iteration held by checkpoint_last.pth
        self.last_saved_at = time.perf_counter()  # when it was written (or training started)
        self.ddp_model = dist.wrap_ddp(self.model, self.device)
        if self.is_main:
            checkpoint.write_text_atomic(self.out_dir / "config.yaml", cfg.dump())
        self.logger.info(
            "%s %s on %s x %d: %d images, %d iters/epoch, %d iters, batch %d (%d per process), lr %g",
            cfg.MODEL.METHOD, cfg.MODEL.ARCH, self.device.type, world, len(self.dataset),
            self.iters_per_epoch, self.max_iter, cfg.SOLVER.BATCH_SIZE, per_process, self.base_lr,
        )  # fmt: skip

    def _build_data(self, world: int) -> int:
        """Dataset, resumable sampler and loader; returns the batch size per process."""
        cfg = self.cfg
        if cfg.SOLVER.BATCH_SIZE % world:
            raise PretrainError(
                f"SOLVER.BATCH_SIZE {cfg.SOLVER.BATCH_SIZE} (the total over processes) is not divisible by "
                f"the {world} processes; choose a multiple of {world}."
            )
        bad_images = None
        if cfg.DATA.SKIP_BAD_IMAGES:
            path = bad_images_file(self.out_dir, dist.get_rank(), world)
            bad_images = pretrain_bad_image_log(path, cfg.DATA.MAX_BAD_IMAGES)
        self.dataset = build_dataset(cfg, bad_images)
        per_process = cfg.SOLVER.BATCH_SIZE // world
        self.sampler = ResumableDistributedSampler(
            len(self.dataset), per_process, dist.get_rank(), world, cfg.SEED
        )
        self.iters_per_epoch = self.sampler.batches_per_epoch
        if self.iters_per_epoch == 0:
            raise PretrainError(
                f"the dataset has {len(self.dataset)} images, fewer than one batch of SOLVER.BATCH_SIZE "
                f"{cfg.SOLVER.BATCH_SIZE}; lower SOLVER.BATCH_SIZE or add images."
            )
        self.loader = DataLoader(
            self.dataset,
            batch_size=per_process,
            sampler=self.sampler,
            num_workers=cfg.DATA.NUM_WORKERS,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            generator=torch.Generator().manual_seed(cfg.SEED + dist.get_rank()),  # keeps the global RNG out
        )
        return per_process

    def _build_model(self) -> torch.nn.Module:
        model = build_model(self.cfg, num_classes=len(self.dataset.classes))
        if hasattr(model, "encoder_q"):
            model.encoder_q = dist.maybe_convert_sync_bn(model.encoder_q, self.cfg.TRAIN.SYNC_BN)
            splits = self.cfg.MODEL.SHUFFLE_BN_SPLITS
            if self.cfg.MODEL.SHUFFLE_BN and splits > 1 and not dist.is_distributed():
                if self.cfg.SOLVER.BATCH_SIZE % splits:
                    raise PretrainError(
                        f"SOLVER.BATCH_SIZE {self.cfg.SOLVER.BATCH_SIZE} does not split into "
                        f"MODEL.SHUFFLE_BN_SPLITS={splits} BN sub-batches; use a multiple of it, or set "
                        "MODEL.SHUFFLE_BN_SPLITS to a divisor of the batch."
                    )
                split_encoders_batch_norm(model, splits)
                self.logger.info("one process: shuffle-BN over %d BN sub-batches of the batch", splits)
        else:
            model = dist.maybe_convert_sync_bn(model, self.cfg.TRAIN.SYNC_BN)
        model = model.to(self.device)
        if self.cfg.TRAIN.CHANNELS_LAST and self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        return model

    def state(self, iteration: int) -> dict:
        """Everything needed to continue exactly: weights, queues, optimizer, scaler, iteration, RNG, cfg."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": iteration,
            "epoch": iteration // self.iters_per_epoch,
            "rng": checkpoint.rng_state(self.device),
            "config": self.cfg.dump(),
        }

    def _resume(self) -> int:
        path = self.out_dir / checkpoint.LAST
        if not path.is_file():
            self.logger.info("--resume: no %s yet, starting from iteration 0", path)
            return 0
        ckpt = checkpoint.load(path)
        missing = [key for key in checkpoint.RESUME_KEYS if key not in ckpt]
        if missing:
            raise PretrainError(
                f"checkpoint {path} lacks {', '.join(missing)}: it is not a resumable state written by "
                f"pretrain.train_net (those hold {', '.join(checkpoint.RESUME_KEYS)}). Delete it to start "
                "over, or use a fresh OUTPUT_DIR."
            )
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise PretrainError(
                f"checkpoint {path} does not fit this config ({e}). It was written with another method, "
                "architecture or head size; use a fresh OUTPUT_DIR or the config it was trained with."
            ) from e
        if ckpt["scaler"] or not self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        else:  # saved without fp16 loss scaling (bfloat16, CPU): the scale starts afresh
            self.logger.info("checkpoint %s has no fp16 loss-scaler state; starting a new scaler", path)
        checkpoint.set_rng_state(ckpt["rng"], self.device)
        self.logger.info("resumed from %s: epoch %d, iteration %d", path, ckpt["epoch"], ckpt["iteration"])
        return int(ckpt["iteration"])

    def save_last(self, iteration: int) -> None:
        if self.is_main and iteration != self.last_saved:
            checkpoint.save_atomic(self.state(iteration), self.out_dir / checkpoint.LAST)
            self.last_saved_at = time.perf_counter()
        self.last_saved = iteration

    def _refresh_last(self, iteration: int) -> None:
        """A periodic save_last, skipped while the last write is younger than LAST_CHECKPOINT_MIN_SECONDS
        (a 64 px epoch of 600 images takes ~7 s on a CPU; its 140 MB checkpoint ~0.4 s)."""
        if time.perf_counter() - self.last_saved_at >= self.cfg.SOLVER.LAST_CHECKPOINT_MIN_SECONDS:
            self.save_last(iteration)

    def _save_epoch_end(self, iteration: int) -> None:
        self._refresh_last(iteration)
        epoch = iteration // self.iters_per_epoch
        period = self.cfg.SOLVER.CHECKPOINT_PERIOD
        if self.is_main and period > 0 and epoch % period == 0:
            checkpoint.save_atomic(self.state(iteration), self.out_dir / f"checkpoint_epoch_{epoch:04d}.pth")

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _to_device(self, batch):
        fmt = torch.channels_last if self.cfg.TRAIN.CHANNELS_LAST and self.device.type == "cuda" else None
        out = []
        for t in batch:
            t = t.to(self.device, non_blocking=True)
            out.append(t.contiguous(memory_format=fmt) if fmt is not None and t.dim() == 4 else t)
        return out

    def step(self, batch, iteration: int) -> dict[str, float]:
        """One optimisation step; returns the loss values (Python floats)."""
        lr = learning_rate(self.cfg, self.base_lr, iteration, self.max_iter, self.iters_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        dist.unwrap(self.ddp_model).set_iteration(iteration)
        inputs = self._to_device(batch if self.cfg.MODEL.METHOD == "supervised" else batch[:2])
        extras = {}
        if returns_view_params(self.cfg):  # batch = (view_q, view_k, view_params (N, 2, 5), label)
            extras["view_params"] = batch[2].to(self.device, non_blocking=True)
        with self._autocast():
            losses = self.ddp_model(*inputs, **extras)
        values = {k: v.item() for k, v in losses.items()}
        if not all(math.isfinite(v) for v in values.values()):
            raise PretrainError(
                f"loss is not finite at iteration {iteration + 1} (losses {values}, lr {lr:g}). Training "
                "diverged: lower SOLVER.BASE_LR (e.g. scale it linearly with SOLVER.BATCH_SIZE via "
                "SOLVER.REFERENCE_BATCH_SIZE), or try TRAIN.AMP_DTYPE bfloat16; resume from the last "
                "checkpoint."
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["loss"]).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {**values, "lr": lr}

    def train(self) -> Path | None:
        """Train from start_iter to max_iter; returns the model_final.pth path on rank 0."""
        cfg = self.cfg
        wandb_run = start_run(cfg, "pretrain", PretrainError) if self.is_main else None
        monitor = Monitor(self.out_dir, self.is_main, self.start_iter, self.max_iter, wandb_run)
        iteration = self.start_iter
        self.ddp_model.train()
        start = time.perf_counter()
        finished = False
        try:
            while iteration < self.max_iter:
                epoch = iteration // self.iters_per_epoch
                self.sampler.set_position(epoch, iteration % self.iters_per_epoch)
                tic = time.perf_counter()
                for batch in self.loader:
                    data_time = time.perf_counter() - tic
                    values = self.step(batch, iteration)
                    iteration += 1
                    monitor.step(values)
                    if iteration % cfg.SOLVER.LOG_PERIOD == 0 or iteration in (1, self.max_iter):
                        values = dist.all_reduce_mean({**monitor.window_mean(), "lr": values["lr"]})
                        record = {"iter": iteration, "epoch": iteration / self.iters_per_epoch, **values}
                        monitor.write({**record, "time": time.perf_counter() - tic, "data_time": data_time})
                    if iteration % self.iters_per_epoch == 0:
                        self._save_epoch_end(iteration)
                    elif cfg.SOLVER.CHECKPOINT_ITERS and iteration % cfg.SOLVER.CHECKPOINT_ITERS == 0:
                        self._refresh_last(iteration)
                    tic = time.perf_counter()
                    if iteration >= self.max_iter:
                        break
            finished = True
        finally:
            monitor.close(exit_code=0 if finished else 1)
        self.save_last(iteration)
        self.logger.info(
            "trained %d iterations in %.1f s", iteration - self.start_iter, time.perf_counter() - start
        )
        skipped = skipped_images(self.out_dir)
        if skipped:
            self.logger.warning(
                "%d unreadable images were skipped (DATA.SKIP_BAD_IMAGES), listed in %s/bad_images*.txt",
                len(skipped), self.out_dir,
            )  # fmt: skip
        return self._save_final(iteration, len(skipped))

    def _save_final(self, iteration: int, skipped_images: int) -> Path | None:
        if not self.is_main:
            return None
        model = dist.unwrap(self.ddp_model)
        export = model.export_state_dict()
        meta = {
            "method": self.cfg.MODEL.METHOD,
            "arch": self.cfg.MODEL.ARCH,
            "dataset": self.cfg.DATA.DATASET,
            "image_size": self.cfg.DATA.IMAGE_SIZE,
            "batch_size": self.cfg.SOLVER.BATCH_SIZE,
            "iters": iteration,
            "skipped_images": skipped_images,
            "epochs": iteration / self.iters_per_epoch,
            "config": self.cfg.dump(),
            "torch": str(torch.__version__),
        }
        path = checkpoint.save_final(self.out_dir, export, meta)
        self.logger.info("wrote %s (sha256 of state dict in meta)", path)
        return path
