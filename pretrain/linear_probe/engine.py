"""Train a linear classifier on a frozen backbone, then score it and a kNN classifier on the val split.

MoCo linear protocol (He et al., CVPR 2020, Sec. 4.1; DenseCL reuses it): the backbone stays in eval
mode, so its BatchNorm layers use and keep their running statistics, and receives no gradient; only
fc(global-average-pooled C5) is trained with a step LR schedule. The kNN classifier (Wu et al., 2018)
votes with the center-crop train features as memory bank.
"""

import logging
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from pretrain.engine import resolve_device, seed_everything
from pretrain.errors import PretrainError
from pretrain.modules import ResNetTrunk

from .data import build_datasets
from .knn import knn_class_scores, topk_accuracy
from .weights import load_backbone_weights

logger = logging.getLogger("pretrain")


class FrozenBackbone(nn.Module):
    """A ResNet trunk that returns global-average-pooled C5 and can never leave eval mode."""

    def __init__(self, trunk: ResNetTrunk):
        super().__init__()
        self.trunk = trunk.requires_grad_(False)
        self.out_channels = trunk.out_channels
        self.train(False)

    def train(self, mode: bool = True) -> "FrozenBackbone":
        return super().train(False)  # BN running statistics stay frozen whatever the caller asks

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.trunk(images).mean(dim=(2, 3)).float()  # (N, C5)


def build_backbone(cfg) -> FrozenBackbone:
    """ResNet of MODEL.ARCH with MODEL.WEIGHTS (every backbone key required), or random init if empty."""
    trunk = ResNetTrunk(cfg.MODEL.ARCH)
    if cfg.MODEL.WEIGHTS:
        depth = int(cfg.MODEL.ARCH.removeprefix("resnet"))
        state = load_backbone_weights(cfg.MODEL.WEIGHTS, depth)
        result = trunk.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:  # load_backbone_weights returns exactly the backbone keys
            raise PretrainError(
                f"MODEL.WEIGHTS {cfg.MODEL.WEIGHTS} does not fit {cfg.MODEL.ARCH}: missing {missing}, "
                f"unexpected {result.unexpected_keys}."
            )
        logger.info("loaded %d backbone tensors from %s", len(state), cfg.MODEL.WEIGHTS)
    else:
        logger.info("MODEL.WEIGHTS is empty: randomly initialised %s (seed %d)", cfg.MODEL.ARCH, cfg.SEED)
    return FrozenBackbone(trunk)


def build_classifier(cfg, in_channels: int, num_classes: int) -> nn.Sequential:
    """[BatchNorm1d without affine if MODEL.FEATURE_NORM is "batchnorm"] -> Linear(C5, num_classes)."""
    fc = nn.Linear(in_channels, num_classes)
    nn.init.normal_(fc.weight, std=0.01)  # as MoCo's main_lincls
    nn.init.zeros_(fc.bias)
    if cfg.MODEL.FEATURE_NORM == "batchnorm":
        return nn.Sequential(nn.BatchNorm1d(in_channels, affine=False), fc)
    return nn.Sequential(fc)


def step_lr(cfg, epoch: int) -> float:
    """BASE_LR x GAMMA per milestone in SOLVER.STEPS already reached (MoCo: x0.1 at epochs 60 and 80)."""
    return cfg.SOLVER.BASE_LR * cfg.SOLVER.GAMMA ** sum(epoch >= s for s in cfg.SOLVER.STEPS)


class LinearEvaluation:
    """Builds data, frozen backbone and classifier from a frozen cfg; `run()` returns the metrics."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.device = resolve_device(cfg)
        seed_everything(cfg.SEED)
        self.datasets = build_datasets(cfg)
        self.num_classes = len(self.datasets["train"].classes)
        self.backbone = build_backbone(cfg).to(self.device)
        self.classifier = build_classifier(cfg, self.backbone.out_channels, self.num_classes).to(self.device)
        self.optimizer = torch.optim.SGD(
            self.classifier.parameters(),
            lr=cfg.SOLVER.BASE_LR,
            momentum=cfg.SOLVER.MOMENTUM,
            weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        )
        self.use_amp = cfg.TRAIN.AMP and self.device.type == "cuda"

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        workers = self.cfg.DATA.NUM_WORKERS
        return DataLoader(
            self.datasets[name],
            batch_size=self.cfg.SOLVER.BATCH_SIZE,
            shuffle=shuffle,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=shuffle and workers > 0,  # the train loader is iterated every epoch
            # a batch of one cannot be batch-normalised; only the feature BN needs the ragged end dropped
            drop_last=shuffle and self.cfg.MODEL.FEATURE_NORM == "batchnorm",
            generator=torch.Generator().manual_seed(self.cfg.SEED),
        )

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if self.use_amp else nullcontext()
        with amp:
            return self.backbone(images)  # (N, C5) float32

    def _extract(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled C5 features (N, C5) and labels (N,) of a split under the eval transform."""
        feats, labels = [], []
        for images, target in self._loader(name, shuffle=False):
            feats.append(self._features(images))
            labels.append(target.to(self.device))
        return torch.cat(feats), torch.cat(labels)

    def _extract_bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The kNN bank: L2-normalised pooled C5 features (N, C5), written batch by batch into one tensor,
        in half precision on a GPU, and labels (N,). ImageNet's 1.28M x 2048 bank takes 5.2 GB instead of
        a float32 list and its concatenation, then a normalised copy (a peak of ~21 GB)."""
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        size = len(self.datasets["bank"])
        bank, labels, start = None, [], 0
        for images, target in self._loader("bank", shuffle=False):
            feats = F.normalize(self._features(images).float(), dim=1)  # (B, C5)
            if bank is None:
                bank = torch.empty(size, feats.shape[1], dtype=dtype, device=self.device)
            bank[start : start + len(feats)] = feats
            start += len(feats)
            labels.append(target.to(self.device))
        return bank[:start], torch.cat(labels)

    def train_classifier(self) -> int:
        """SOLVER.EPOCHS passes of SGD on the classifier; returns the number of iterations."""
        cfg = self.cfg
        loader = self._loader("train", shuffle=True)
        if len(loader) == 0:
            raise PretrainError(
                f"the train split has {len(self.datasets['train'])} images, fewer than one batch of "
                f"SOLVER.BATCH_SIZE {cfg.SOLVER.BATCH_SIZE}; lower SOLVER.BATCH_SIZE or add images."
            )
        iteration = 0
        self.classifier.train()
        for epoch in range(cfg.SOLVER.EPOCHS):
            lr = step_lr(cfg, epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            tic, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
            for images, labels in loader:
                labels = labels.to(self.device, non_blocking=True)
                logits = self.classifier(self._features(images))  # (N, num_classes)
                loss = F.cross_entropy(logits, labels)
                if not torch.isfinite(loss):
                    raise PretrainError(
                        f"linear classifier loss is not finite at epoch {epoch + 1} (lr {lr:g}). Training "
                        "diverged: lower SOLVER.BASE_LR (feature scales differ between initialisations)."
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                iteration += 1
                loss_sum += loss.item() * labels.numel()
                correct += (logits.argmax(dim=1) == labels).sum().item()
                seen += labels.numel()
                if iteration % cfg.SOLVER.LOG_PERIOD == 0:
                    logger.info("epoch %d iter %d: loss %.4f lr %g", epoch + 1, iteration, loss.item(), lr)
            logger.info(
                "epoch %d/%d: loss %.4f, train top-1 %.2f (augmented), lr %g, %.1f s",
                epoch + 1, cfg.SOLVER.EPOCHS, loss_sum / seen, 100.0 * correct / seen, lr,
                time.perf_counter() - tic,
            )  # fmt: skip
        self.classifier.eval()
        return iteration

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Linear top-1/top-5 and kNN top-1 on the val split, in percent (top-5 capped at the class count)."""
        val_feats, val_labels = self._extract("val")  # (Nv, C5), (Nv,)
        top1, top5 = topk_accuracy(self.classifier.eval()(val_feats), val_labels, (1, 5))
        bank_feats, bank_labels = self._extract_bank()  # (Nt, C5) L2-normalised, (Nt,)
        knn = self.cfg.KNN
        scores = knn_class_scores(
            val_feats,
            bank_feats,
            bank_labels,
            self.num_classes,
            knn.K,
            knn.TEMPERATURE,
            knn.CHUNK_SIZE,
            bank_is_normalized=True,
        )
        (knn_top1,) = topk_accuracy(scores, val_labels, (1,))
        return {"top1": top1, "top5": top5, "knn_top1": knn_top1}

    def run(self) -> tuple[dict[str, float], int]:
        """(metrics, training iterations)."""
        sizes = {name: len(ds) for name, ds in self.datasets.items() if name != "bank"}
        logger.info(
            "linear probe %s on %s: %d classes, %s images, %d epochs, batch %d, lr %g",
            self.cfg.MODEL.ARCH, self.device.type, self.num_classes, sizes, self.cfg.SOLVER.EPOCHS,
            self.cfg.SOLVER.BATCH_SIZE, self.cfg.SOLVER.BASE_LR,
        )  # fmt: skip
        iters = self.train_classifier()
        metrics = self.evaluate()
        logger.info("val: top-1 %.2f, top-5 %.2f, kNN top-1 %.2f", *metrics.values())
        return metrics, iters
