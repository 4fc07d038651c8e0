"""mmsegmentation's training-time photometric distortion and mean-colour padding, as Detectron2 augmentations.

The DenseCL segmentation protocol (Table 3) fine-tunes with mmseg's FCN pipeline, whose training images go
through `PhotoMetricDistortion` after the crop and flip, and are padded to the crop size after
normalisation, i.e. with the mean colour (0 after subtracting PIXEL_MEAN), while labels are padded with the
ignore value. Labels and coordinates pass through both unchanged.

The distortion draws, each with probability 0.5: a brightness offset in [-32, 32]; a contrast factor in
[0.5, 1.5], applied either first or last (one coin flip); a saturation factor in [0.5, 1.5]; a hue shift
of up to 18 of OpenCV's 180 hue steps. Every step clips to [0, 255] and truncates to uint8, as mmseg's does.
"""

from dataclasses import dataclass

import numpy as np
from detectron2.data import transforms as T
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

BRIGHTNESS_DELTA = 32
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 18  # of OpenCV's 180 hue steps for uint8 images


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class DistortionParams:
    """One draw of the distortion; None = that step is skipped."""

    brightness: float | None  # added to every channel
    contrast: float | None  # every channel multiplied
    contrast_first: bool  # contrast before (True) or after (False) the HSV steps
    saturation: float | None  # HSV saturation multiplied
    hue: int | None  # added to the hue, in 1/180 of a turn


class DistortionTransform(T.Transform):
    """Applies one `DistortionParams` draw to an (H, W, 3) uint8 image in `image_format` (RGB or BGR)."""

    def __init__(self, params: DistortionParams, image_format: str):
        super().__init__()
        self.params, self.rgb = params, image_format == "RGB"

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        p = self.params
        out = img
        if p.brightness is not None:
            out = _to_uint8(out.astype(np.float32) + p.brightness)
        if p.contrast is not None and p.contrast_first:
            out = _to_uint8(out.astype(np.float32) * p.contrast)
        if p.saturation is not None or p.hue is not None:
            out = self._hsv_steps(out)
        if p.contrast is not None and not p.contrast_first:
            out = _to_uint8(out.astype(np.float32) * p.contrast)
        return out

    def _hsv_steps(self, img: np.ndarray) -> np.ndarray:
        rgb = img if self.rgb else img[..., ::-1]
        hsv = rgb_to_hsv(rgb.astype(np.float32) / 255.0)  # (H, W, 3), each in [0, 1]
        if self.params.saturation is not None:
            hsv[..., 1] = np.clip(hsv[..., 1] * self.params.saturation, 0.0, 1.0)
        if self.params.hue is not None:
            hsv[..., 0] = (hsv[..., 0] + self.params.hue / 180.0) % 1.0
        out = _to_uint8(hsv_to_rgb(hsv) * 255.0)
        return out if self.rgb else np.ascontiguousarray(out[..., ::-1])

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation


class PhotoMetricDistortion(T.Augmentation):
    """mmseg's `PhotoMetricDistortion` with its default ranges (module docstring)."""

    def __init__(self, image_format: str):
        super().__init__()
        self.image_format = image_format

    def get_transform(self, image: np.ndarray) -> DistortionTransform:
        def maybe(draw):
            return draw() if np.random.rand() < 0.5 else None

        params = DistortionParams(
            brightness=maybe(lambda: float(np.random.uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA))),
            contrast_first=bool(np.random.randint(2)),
            contrast=maybe(lambda: float(np.random.uniform(*CONTRAST_RANGE))),
            saturation=maybe(lambda: float(np.random.uniform(*SATURATION_RANGE))),
            hue=maybe(lambda: int(np.random.randint(-HUE_DELTA, HUE_DELTA + 1))),
        )
        return DistortionTransform(params, self.image_format)


class MeanPadTransform(T.PadTransform):
    """fvcore's PadTransform (bottom and right here) whose image fill is one colour per channel; labels
    and coordinates are padded as there."""

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        out = np.empty((h + self.y0 + self.y1, w + self.x0 + self.x1, *img.shape[2:]), dtype=img.dtype)
        out[...] = np.asarray(self.pad_value).round().astype(img.dtype)
        out[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = img
        return out


class PadToSize(T.Augmentation):
    """Pads images smaller than `size` (h, w) with the mean colour (mmseg pads normalised images with 0)."""

    def __init__(self, size: tuple[int, int], pixel_mean: tuple[float, ...], seg_pad_value: int):
        super().__init__()
        self.size, self.pixel_mean, self.seg_pad_value = size, pixel_mean, seg_pad_value

    def get_transform(self, image: np.ndarray) -> T.Transform:
        pad_h, pad_w = (max(0, s - n) for s, n in zip(self.size, image.shape[:2]))
        if not (pad_h or pad_w):
            return T.NoOpTransform()
        h, w = image.shape[:2]
        return MeanPadTransform(0, 0, pad_w, pad_h, w, h, self.pixel_mean, self.seg_pad_value)
