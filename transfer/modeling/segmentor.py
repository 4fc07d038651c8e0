"""Semantic segmentor with whole-image or sliding-window inference (mmsegmentation `slide` mode).

Training is Detectron2's `SemanticSegmentor` unchanged. Inference upsamples the head's logits to the
input size and, in "slide" mode (the Cityscapes protocol of DenseCL Table 3: 769x769 windows, stride
513), averages the logits of overlapping windows that cover the whole image.
"""

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, SemanticSegmentor
from detectron2.modeling.postprocessing import sem_seg_postprocess
from torch.nn import functional as F


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Start offsets of windows of length `crop` every `stride` that cover [0, size); the last window
    is shifted back to end at `size` (and clipped at 0 when the image is smaller than the window)."""
    num = max(size - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, size) - crop, 0) for i in range(num)]


@META_ARCH_REGISTRY.register()
class SlidingSemanticSegmentor(SemanticSegmentor):
    """`SemanticSegmentor` whose inference follows TEST.SEM_SEG.MODE ("whole" | "slide")."""

    @configurable
    def __init__(self, *, test_mode: str, crop_size: tuple[int, int], stride: tuple[int, int], **kwargs):
        super().__init__(**kwargs)
        if test_mode not in ("whole", "slide"):
            raise ValueError(f"TEST.SEM_SEG.MODE must be 'whole' or 'slide', got {test_mode!r}")
        self.test_mode = test_mode
        self.crop_size = tuple(crop_size)
        self.stride = tuple(stride)

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        crop_size = cfg.TEST.SEM_SEG.CROP_SIZE or cfg.INPUT.CROP.SIZE
        stride = cfg.TEST.SEM_SEG.STRIDE or [round(c * 2 / 3) for c in crop_size]
        ret.update(test_mode=cfg.TEST.SEM_SEG.MODE, crop_size=crop_size, stride=stride)
        return ret

    def forward(self, batched_inputs):
        if self.training:
            return super().forward(batched_inputs)
        results = []
        for inputs in batched_inputs:
            image = (inputs["image"].to(self.device) - self.pixel_mean) / self.pixel_std  # (3, H, W)
            height, width = image.shape[-2:]
            if self.test_mode == "slide":
                logits = self._slide_logits(image[None])
            else:
                logits = self._logits(image[None])
            out_h, out_w = inputs.get("height", height), inputs.get("width", width)
            results.append({"sem_seg": sem_seg_postprocess(logits[0], (height, width), out_h, out_w)})
        return results

    def _logits(self, images: torch.Tensor) -> torch.Tensor:
        """(1, 3, h, w) -> logits (1, K, h, w)."""
        logits, _ = self.sem_seg_head(self.backbone(images))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)

    def _slide_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Average of window logits over every pixel: (1, 3, H, W) -> (1, K, H, W)."""
        height, width = images.shape[-2:]
        (crop_h, crop_w), (stride_h, stride_w) = self.crop_size, self.stride
        summed, counts = None, images.new_zeros((1, 1, height, width))
        for y in window_starts(height, crop_h, stride_h):
            for x in window_starts(width, crop_w, stride_w):
                window = images[:, :, y : y + crop_h, x : x + crop_w]
                logits = self._logits(window)  # (1, K, h, w)
                if summed is None:
                    summed = images.new_zeros((1, logits.shape[1], height, width))
                summed[:, :, y : y + crop_h, x : x + crop_w] += logits
                counts[:, :, y : y + crop_h, x : x + crop_w] += 1
        return summed / counts
