"""Configs build real Detectron2 models; the extensions behave as the protocols say."""

import logging

import pytest
import torch
from detectron2.modeling import build_backbone, build_model
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock
from transfer_testutils import CONFIGS, depth_opts, make_cfg

from transfer import runtime
from transfer.modeling.segmentor import window_starts
from transfer.runtime import autocast_training_on_cpu, fall_back_to_bn, scale_learning_rate

CONFIG_FILES = sorted(p.name for p in CONFIGS.glob("[a-z]*.yaml"))


def test_every_interface_config_exists():
    names = {"pascal_voc_R_50_C4_24k", "coco_R_50_FPN_1x_syncbn", "fcn_R_50_d8_voc12aug_20k"}
    names.add("fcn_R_50_d8_cityscapes_40k")
    assert {f"{n}{s}.yaml" for n in names for s in ("", "_ssl")} == set(CONFIG_FILES)


@pytest.mark.parametrize("depth", [50, 18])
@pytest.mark.parametrize("config_file", CONFIG_FILES)
def test_config_merges_and_builds_a_model_on_cpu(config_file, depth):
    cfg = make_cfg(str(CONFIGS / config_file), *depth_opts(depth))
    model = build_model(cfg)
    assert cfg.TRANSFER.TASK and cfg.MODEL.BACKBONE.FREEZE_AT == 0
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    if config_file.endswith("_ssl.yaml"):
        assert cfg.INPUT.FORMAT == "RGB" and not cfg.MODEL.RESNETS.STRIDE_IN_1X1
        assert cfg.MODEL.PIXEL_STD == [58.395, 57.12, 57.375]


@pytest.mark.parametrize("depth", [18, 50])
def test_c4_res5_head_follows_the_depth_and_ends_with_a_norm(depth):
    cfg = make_cfg(str(CONFIGS / "pascal_voc_R_50_C4_24k.yaml"), *depth_opts(depth))
    res5 = build_model(cfg).roi_heads.res5
    block = BasicBlock if depth == 18 else BottleneckBlock
    assert [type(m) for m in res5][:-1] == [block] * (2 if depth == 18 else 3)
    assert isinstance(res5.norm, torch.nn.BatchNorm2d)
    assert res5.norm.num_features == (512 if depth == 18 else 2048)
    features = torch.randn(2, res5[0].in_channels, 14, 14)
    assert res5(features).shape == (2, res5.norm.num_features, 7, 7)


@pytest.mark.parametrize("depth", [18, 50])
def test_dilated_backbone_has_output_stride_8_and_detectron2_names(depth):
    opts = [*depth_opts(depth), "MODEL.RESNETS.OUT_FEATURES", "['res2', 'res3', 'res4', 'res5']"]
    cfg = make_cfg(str(CONFIGS / "fcn_R_50_d8_voc12aug_20k.yaml"), *opts)
    dilated = build_backbone(cfg)
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.RESNETS.RES5_DILATION = 1
    standard = build_backbone(cfg)
    assert {k: v.shape for k, v in dilated.state_dict().items()} == {
        k: v.shape for k, v in standard.state_dict().items()
    }
    features = dilated.eval()(torch.randn(1, 3, 64, 64))
    assert {k: tuple(v.shape[-2:]) for k, v in features.items()} == {
        "res2": (16, 16),
        "res3": (8, 8),
        "res4": (8, 8),
        "res5": (8, 8),
    }
    assert dilated.output_shape()["res5"].stride == 8
    dilated_conv = "conv2" if depth == 50 else "conv1"  # the 3x3 conv of a Bottleneck / BasicBlock
    assert getattr(dilated.res4[0], dilated_conv).dilation == (1, 1)  # contract_dilation: 2 // 2
    assert getattr(dilated.res4[1], dilated_conv).dilation == (2, 2)
    assert getattr(dilated.res5[0], dilated_conv).dilation == (2, 2)
    assert getattr(dilated.res5[1], dilated_conv).dilation == (4, 4)


def test_fcn_losses_and_inference_shapes():
    opts = [*depth_opts(18), "MODEL.SEM_SEG_HEAD.CONVS_DIM", "16", "MODEL.SEM_SEG_HEAD.AUX_CONVS_DIM", "8"]
    model = build_model(make_cfg(str(CONFIGS / "fcn_R_50_d8_voc12aug_20k.yaml"), *opts))
    batch = [
        {"image": torch.randint(0, 255, (3, 48, 64), dtype=torch.uint8), "sem_seg": torch.full((48, 64), 255)}
        for _ in range(2)
    ]
    batch[0]["sem_seg"][:24] = 3
    losses = model(batch)
    assert set(losses) == {"loss_sem_seg", "loss_sem_seg_aux"} and all(
        torch.isfinite(v) for v in losses.values()
    )
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": batch[0]["image"], "height": 96, "width": 128}])
    assert out["sem_seg"].shape == (21, 96, 128)


@pytest.mark.parametrize("avg_non_ignore", [False, True])
def test_fcn_loss_averages_like_the_protocols_mmseg(avg_non_ignore):
    """mmseg's CrossEntropyLoss (the paper's FCN runs) averages over every pixel, an ignored one adding 0."""
    opts = [*depth_opts(18), "MODEL.SEM_SEG_HEAD.LOSS_AVG_NON_IGNORE", str(avg_non_ignore)]
    head = build_model(make_cfg(str(CONFIGS / "fcn_R_50_d8_voc12aug_20k.yaml"), *opts)).sem_seg_head
    logits = torch.randn(2, 21, 6, 8)
    targets = torch.randint(0, 21, (2, 48, 64))
    targets[:, 12:] = 255  # three quarters ignored: padding and object boundaries
    labelled = torch.nn.functional.cross_entropy(
        torch.nn.functional.interpolate(logits, size=(48, 64), mode="bilinear", align_corners=False),
        targets,
        ignore_index=255,
    )
    assert head._loss(logits, targets) == pytest.approx(float(labelled) * (1 if avg_non_ignore else 0.25))


def _fcn_and_batch():
    opts = [*depth_opts(18), "MODEL.SEM_SEG_HEAD.CONVS_DIM", "16", "MODEL.SEM_SEG_HEAD.AUX_CONVS_DIM", "8"]
    cfg = make_cfg(str(CONFIGS / "fcn_R_50_d8_voc12aug_20k.yaml"), *opts)
    image = torch.randint(0, 255, (3, 48, 64), dtype=torch.uint8)
    return cfg, build_model(cfg), [{"image": image, "sem_seg": torch.full((48, 64), 3)}]


@pytest.mark.parametrize("native_bf16", [True, False])
def test_cpu_bfloat16_autocast_of_training_only(monkeypatch, caplog, native_bf16):
    """TRANSFER.AMP_CPU: the training forward runs in bfloat16 (losses returned in fp32) where the CPU has
    native bf16, else fp32 (logged); inference and the parameter names never change."""
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native_bf16)
    cfg, model, batch = _fcn_and_batch()
    names = list(model.state_dict())
    cfg.TRANSFER.AMP_CPU = True
    with caplog.at_level(logging.INFO, logger="transfer.runtime"):
        assert autocast_training_on_cpu(model, cfg) == native_bf16
    assert ("bfloat16 autocast on CPU" in caplog.text) == native_bf16
    assert ("training in fp32" in caplog.text) != native_bf16
    seen = []
    model.backbone.register_forward_hook(lambda m, i, out: seen.append(out["res5"].dtype))
    losses = model(batch)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": batch[0]["image"], "height": 48, "width": 64}])
    assert seen == [torch.bfloat16 if native_bf16 else torch.float32, torch.float32]
    assert out["sem_seg"].dtype == torch.float32 and list(model.state_dict()) == names


def test_cpu_autocast_is_off_unless_asked():
    cfg, model, batch = _fcn_and_batch()
    assert not autocast_training_on_cpu(model, cfg)  # TRANSFER.AMP_CPU defaults to False
    seen = []
    model.backbone.register_forward_hook(lambda m, i, out: seen.append(out["res5"].dtype))
    model(batch)
    assert seen == [torch.float32]


def test_sliding_window_averages_overlapping_windows():
    assert window_starts(1024, 769, 513) == [0, 255]
    assert window_starts(2048, 769, 513) == [0, 513, 1026, 1279]
    assert window_starts(100, 769, 513) == [0]
    opts = [*depth_opts(18), "MODEL.SEM_SEG_HEAD.CONVS_DIM", "16", "INPUT.CROP.SIZE", "[64, 64]"]
    cfg = make_cfg(str(CONFIGS / "fcn_R_50_d8_cityscapes_40k.yaml"), *opts)
    model = build_model(cfg).eval()
    assert model.test_mode == "slide" and model.crop_size == (64, 64) and model.stride == (43, 43)
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        slide = model._slide_logits(image)
        windows = [model._logits(image[:, :, :, x : x + 64]) for x in window_starts(96, 64, 43)]
    assert slide.shape == (1, 19, 64, 96)
    torch.testing.assert_close(slide[..., :32], windows[0][..., :32])  # covered by the first window only
    torch.testing.assert_close(slide[..., 64:], windows[1][..., 32:])  # by the last one only
    torch.testing.assert_close(slide[..., 32:64], (windows[0][..., 32:] + windows[1][..., :32]) / 2)


def test_syncbn_falls_back_to_bn_with_one_message(caplog):
    cfg = make_cfg(str(CONFIGS / "coco_R_50_FPN_1x_syncbn.yaml"), world_size=2)
    assert cfg.MODEL.RESNETS.NORM == "SyncBN"
    with caplog.at_level(logging.WARNING, logger="transfer.runtime"):
        changed = fall_back_to_bn(cfg, world_size=1)
    assert set(changed) == {
        "MODEL.RESNETS.NORM",
        "MODEL.FPN.NORM",
        "MODEL.ROI_BOX_HEAD.NORM",
        "MODEL.ROI_MASK_HEAD.NORM",
    }
    assert all(cfg.MODEL[k.split(".")[1]].NORM == "BN" for k in changed)
    assert len([r for r in caplog.records if "SyncBN -> BN" in r.message]) == 1


def test_linear_lr_scaling_is_applied_once_and_recorded():
    cfg = make_cfg(str(CONFIGS / "pascal_voc_R_50_C4_24k.yaml"), "SOLVER.IMS_PER_BATCH", "4")
    record = scale_learning_rate(cfg)
    assert pytest.approx(0.005) == cfg.SOLVER.BASE_LR and record["base_lr"] == pytest.approx(0.005)
    assert record["configured_base_lr"] == 0.02 and record["reference_ims_per_batch"] == 16
    assert scale_learning_rate(cfg)["rule"] == "none"  # the dumped config does not scale again
    assert cfg.SOLVER.MAX_ITER == 24000 and record["epochs_vs_protocol"] == 0.25  # schedule kept
    off = make_cfg(str(CONFIGS / "pascal_voc_R_50_C4_24k.yaml"), "TRANSFER.REFERENCE_IMS_PER_BATCH", "0")
    assert scale_learning_rate(off)["rule"] == "none" and off.SOLVER.BASE_LR == 0.02


def test_scale_schedule_keeps_the_protocols_epochs():
    cfg = make_cfg(
        str(CONFIGS / "pascal_voc_R_50_C4_24k.yaml"),
        "SOLVER.IMS_PER_BATCH",
        "4",
        "TRANSFER.SCALE_SCHEDULE",
        "True",
    )
    record = scale_learning_rate(cfg)
    assert pytest.approx(0.005) == cfg.SOLVER.BASE_LR and cfg.SOLVER.MAX_ITER == 96000
    assert tuple(cfg.SOLVER.STEPS) == (72000, 88000) and cfg.SOLVER.WARMUP_ITERS == 400
    assert record["max_iter"] == 96000 and record["epochs_vs_protocol"] == 1.0
    assert scale_learning_rate(cfg)["max_iter"] == 96000  # the dumped config does not stretch again
