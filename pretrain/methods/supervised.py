"""Supervised ImageNet-style baseline: a torchvision ResNet classifier trained with cross-entropy."""

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ..errors import PretrainError
from ..modules import ARCHS


class Supervised(nn.Module):
    """Wraps a torchvision ResNet (`net`); `export_state_dict` gives its plain keys, fc included."""

    def __init__(self, arch: str, num_classes: int):
        super().__init__()
        if arch not in ARCHS:
            raise PretrainError(f"MODEL.ARCH {arch!r} is not supported; expected one of {', '.join(ARCHS)}.")
        self.net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)

    @classmethod
    def from_config(cls, cfg, num_classes: int) -> "Supervised":
        return cls(cfg.MODEL.ARCH, num_classes)

    def set_iteration(self, iteration: int) -> None:
        """No schedule inside the model."""

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        return self.net.state_dict()

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(images)
        loss = F.cross_entropy(logits.float(), labels)
        return {"loss_cls": loss, "loss": loss}
