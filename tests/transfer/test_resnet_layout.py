"""Torchvision <-> Detectron2 ResNet key renaming: both directions are inverse bijections on every depth."""

import pytest

from transfer.resnet_layout import (
    SUPPORTED_DEPTHS,
    detectron2_to_torchvision,
    expected_backbone_shapes,
    torchvision_to_detectron2,
)


@pytest.mark.parametrize("depth", SUPPORTED_DEPTHS)
def test_round_trip_every_backbone_key(depth):
    keys = list(expected_backbone_shapes(depth))
    d2_keys = [torchvision_to_detectron2(k) for k in keys]
    assert len(set(d2_keys)) == len(keys)
    assert [detectron2_to_torchvision(k) for k in d2_keys] == keys


@pytest.mark.parametrize(
    ("d2", "tv"),
    [
        ("stem.conv1.weight", "conv1.weight"),
        ("stem.conv1.norm.running_var", "bn1.running_var"),
        ("res2.0.conv3.norm.bias", "layer1.0.bn3.bias"),
        ("res5.1.conv2.weight", "layer4.1.conv2.weight"),
        ("res3.0.shortcut.weight", "layer2.0.downsample.0.weight"),
        ("res4.0.shortcut.norm.running_mean", "layer3.0.downsample.1.running_mean"),
    ],
)
def test_detectron2_to_torchvision_names(d2, tv):
    assert detectron2_to_torchvision(d2) == tv


@pytest.mark.parametrize("key", ["fc.weight", "backbone.res2.0.conv1.weight", "res6.0.conv1.weight"])
def test_detectron2_to_torchvision_rejects_other_keys(key):
    with pytest.raises(KeyError, match="not a Detectron2 ResNet backbone key"):
        detectron2_to_torchvision(key)
