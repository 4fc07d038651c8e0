"""mmseg's photometric distortion and mean-colour padding (transfer/data/photometric.py)."""

import numpy as np
import pytest
from detectron2.data import transforms as T

from transfer.data.photometric import (
    BRIGHTNESS_DELTA,
    HUE_DELTA,
    DistortionParams,
    DistortionTransform,
    PadToSize,
    PhotoMetricDistortion,
)

NONE = DistortionParams(brightness=None, contrast=None, contrast_first=True, saturation=None, hue=None)


def _params(**changes) -> DistortionParams:
    return DistortionParams(**{**NONE.__dict__, **changes})


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)


def test_brightness_and_contrast_clip_and_truncate_to_uint8():
    img = np.array([[[10, 100, 250]]], dtype=np.uint8)
    assert DistortionTransform(_params(brightness=10.7), "RGB").apply_image(img).tolist() == [
        [[20, 110, 255]]
    ]
    assert DistortionTransform(_params(contrast=1.5), "RGB").apply_image(img).tolist() == [[[15, 150, 255]]]


def test_contrast_order_is_drawn():
    """Contrast before or after the HSV steps gives different images when both run."""
    img = _image()
    first = DistortionTransform(_params(contrast=1.4, saturation=0.3), "RGB").apply_image(img)
    last = DistortionTransform(
        _params(contrast=1.4, saturation=0.3, contrast_first=False), "RGB"
    ).apply_image(img)
    assert not np.array_equal(first, last)


@pytest.mark.parametrize("fmt", ["RGB", "BGR"])
def test_hue_turns_and_saturation_greys_in_either_channel_order(fmt):
    red = np.array([[[255, 0, 0]]], dtype=np.uint8)  # RGB
    green = np.array([[[0, 255, 0]]], dtype=np.uint8)
    flip = (lambda a: a[..., ::-1]) if fmt == "BGR" else (lambda a: a)
    turned = DistortionTransform(_params(hue=60), fmt).apply_image(flip(red))  # 60 of 180 steps: a third
    assert np.array_equal(flip(turned), green)
    grey = DistortionTransform(_params(saturation=0.0), fmt).apply_image(_image())
    assert np.abs(grey.astype(int) - grey[..., :1].astype(int)).max() <= 1


def test_labels_and_coordinates_pass_unchanged():
    t = DistortionTransform(_params(brightness=5.0, contrast=0.8, saturation=1.2, hue=3), "RGB")
    labels = np.arange(30, dtype=np.uint8).reshape(6, 5)
    assert np.array_equal(t.apply_segmentation(labels), labels)
    assert np.array_equal(t.apply_coords(np.array([[1.0, 2.0]])), np.array([[1.0, 2.0]]))


def test_each_step_is_drawn_half_of_the_time_within_its_range():
    np.random.seed(0)
    aug = PhotoMetricDistortion("RGB")
    draws = [aug.get_transform(_image()).params for _ in range(600)]
    for step in ("brightness", "contrast", "saturation", "hue"):
        values = [getattr(p, step) for p in draws if getattr(p, step) is not None]
        assert 0.42 < len(values) / len(draws) < 0.58, step
    assert all(abs(p.brightness) <= BRIGHTNESS_DELTA for p in draws if p.brightness is not None)
    assert all(0.5 <= p.contrast <= 1.5 for p in draws if p.contrast is not None)
    assert {p.hue for p in draws if p.hue is not None} <= set(range(-HUE_DELTA, HUE_DELTA + 1))
    assert 0.42 < np.mean([p.contrast_first for p in draws]) < 0.58


def test_pad_to_size_uses_the_mean_colour_and_the_ignore_label():
    aug = PadToSize((8, 7), (123.675, 116.28, 103.53), 255)
    img, labels = _image(), np.zeros((6, 5), dtype=np.uint8)
    inputs = T.AugInput(img, sem_seg=labels)
    aug(inputs)
    assert inputs.image.shape == (8, 7, 3) and inputs.sem_seg.shape == (8, 7)
    assert np.array_equal(inputs.image[:6, :5], img) and (inputs.image[6:] == [124, 116, 104]).all()
    assert (inputs.sem_seg[:, 5:] == 255).all() and (inputs.sem_seg[:6, :5] == 0).all()
    assert isinstance(PadToSize((6, 5), (0.0, 0.0, 0.0), 255).get_transform(img), T.NoOpTransform)
