"""Conversion of every supported checkpoint layout into Detectron2 models, and refusal of bad ones."""

import pickle
from pathlib import Path

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from transfer_testutils import CONFIGS, depth_opts, make_cfg

from transfer.convert import convert_checkpoint, main
from transfer.errors import TransferError
from transfer.resnet_layout import expected_backbone_shapes, infer_depth, torchvision_to_detectron2

PREFIXES = {
    "plain": "",
    "densecl_release": "",
    "moco": "module.encoder_q.",
    "ours": "encoder_q.backbone.",
    "lightning": "model.backbone.",
}


def _layout(name: str, state: dict[str, torch.Tensor]) -> tuple[dict, set[str]]:
    """(checkpoint in layout `name`, the keys that must be reported as dropped)."""
    if name == "plain":  # torchvision / supervised: classifier included
        return dict(state), {"fc.weight", "fc.bias"}
    backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if name == "densecl_release":  # official DenseCL model-zoo file: prefix-free backbone, no fc
        return {"state_dict": backbone, "meta": {"epoch": 200}}, set()
    if name == "moco":  # facebookresearch/moco main_moco.py checkpoint (.pth.tar)
        sd = {f"module.encoder_q.{k}": v for k, v in state.items()}
        sd |= {f"module.encoder_k.{k}": v for k, v in state.items()}  # shared storage: a small file
        sd["module.queue"], sd["module.queue_ptr"] = torch.randn(8, 16), torch.zeros(1, dtype=torch.long)
        return {"epoch": 200, "arch": "resnet50", "state_dict": sd}, set(sd) - {
            f"module.encoder_q.{k}" for k in backbone
        }
    if name == "ours":  # pretrain/ model_final.pth of DenseCL (pretrain/README.md "Outputs")
        sd = {f"encoder_q.backbone.{k}": v for k, v in backbone.items()}
        heads = {
            "encoder_q.global_head.0.weight": torch.randn(4, 4),
            "encoder_q.dense_head.0.weight": torch.randn(4, 4, 1, 1),
            "queue_global": torch.randn(4, 8),
            "queue_dense": torch.randn(4, 8),
        }
        heads |= {f"encoder_k.backbone.{k}": v for k, v in backbone.items()}
        return {"state_dict": sd | heads, "meta": {"method": "densecl", "epochs": 1}}, set(heads)
    if name == "lightning":  # LightningModule wrapping a model with a `backbone` attribute
        sd = {f"model.backbone.{k}": v for k, v in backbone.items()}
        sd["model.head.weight"] = torch.randn(2, 2)
        return {"epoch": 3, "global_step": 10, "state_dict": sd}, {"model.head.weight"}
    raise ValueError(name)


def _load_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f)


@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize("layout", sorted(PREFIXES))
def test_every_layout_converts_to_the_source_tensors(tmp_path, resnet_state_dicts, depth, layout):
    state = resnet_state_dicts[depth]
    checkpoint, dropped = _layout(layout, state)
    source = tmp_path / ("ckpt.pth.tar" if layout == "moco" else "ckpt.pth")
    torch.save(checkpoint, source)

    report = convert_checkpoint(source, tmp_path / "out.pkl")

    data = _load_pickle(tmp_path / "out.pkl")
    assert data["__author__"] == "densebench" and data["matching_heuristics"] is True
    expected = expected_backbone_shapes(depth)
    assert report.depth == depth and report.converted == len(expected) == len(data["model"])
    for key in expected:
        assert torch.equal(torch.from_numpy(data["model"][torchvision_to_detectron2(key)]), state[key]), key
    reported = {k for keys in report.dropped.values() for k in keys}
    assert reported == {k for k in dropped if not k.endswith("num_batches_tracked")}
    assert report.unexpected == []
    assert report.prefix == PREFIXES[layout]


def test_rename_matches_detectron2_names():
    assert torchvision_to_detectron2("conv1.weight") == "stem.conv1.weight"
    assert torchvision_to_detectron2("bn1.running_var") == "stem.conv1.norm.running_var"
    assert torchvision_to_detectron2("layer2.0.bn3.bias") == "res3.0.conv3.norm.bias"
    assert torchvision_to_detectron2("layer1.0.downsample.0.weight") == "res2.0.shortcut.weight"
    assert (
        torchvision_to_detectron2("layer4.1.downsample.1.running_mean") == "res5.1.shortcut.norm.running_mean"
    )


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_depth_is_inferred_from_the_block_structure(depth):
    assert infer_depth(set(expected_backbone_shapes(depth))) == depth


def _backbone_sources(model_keys: list[str]) -> dict[str, str]:
    """Model key -> the Detectron2 ResNet key it must be loaded from (C4 res5 lives in roi_heads)."""
    sources = {}
    for key in model_keys:
        for prefix in ("backbone.bottom_up.", "backbone.", "roi_heads."):
            rest = key[len(prefix) :]
            if key.endswith("num_batches_tracked"):
                break
            if key.startswith(prefix) and rest.split(".")[0] in ("stem", "res2", "res3", "res4", "res5"):
                if rest.startswith("res5.norm."):  # the extra norm of Res5ROIHeadsExtraNorm: a new layer
                    break
                sources[key] = rest
                break
    return sources


MODELS = {
    "c4": "pascal_voc_R_50_C4_24k_ssl.yaml",  # res2-4 in the backbone, res5 in the ROI head
    "fpn": "coco_R_50_FPN_1x_syncbn_ssl.yaml",
    "fcn_d8": "fcn_R_50_d8_voc12aug_20k_ssl.yaml",
}


@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize("model_type", sorted(MODELS))
def test_converted_weights_load_into_detectron2_models(tmp_path, resnet_state_dicts, depth, model_type):
    state = resnet_state_dicts[depth]
    torch.save(_layout("ours", state)[0], tmp_path / "model_final.pth")
    convert_checkpoint(tmp_path / "model_final.pth", tmp_path / "w.pkl")
    model = build_model(make_cfg(str(CONFIGS / MODELS[model_type]), *depth_opts(depth)))

    DetectionCheckpointer(model).load(str(tmp_path / "w.pkl"))

    model_state = model.state_dict()
    sources = _backbone_sources(list(model_state))
    converted = {torchvision_to_detectron2(k): k for k in expected_backbone_shapes(depth)}
    # every backbone parameter and BN buffer of the model was loaded (zero missing keys) ...
    assert sorted(sources.values()) == sorted(converted)
    for model_key, d2_key in sources.items():
        assert torch.equal(model_state[model_key], state[converted[d2_key]]), model_key


def _refused(tmp_path, checkpoint, match: str):
    path = tmp_path / "bad.pth"
    torch.save(checkpoint, path)
    with pytest.raises(TransferError, match=match):
        convert_checkpoint(path, tmp_path / "bad.pkl")
    assert not (tmp_path / "bad.pkl").exists()


def test_incomplete_backbone_is_refused(tmp_path, resnet_state_dicts):
    state = dict(resnet_state_dicts[18])
    del state["layer4.1.conv2.weight"]
    _refused(tmp_path, state, "incomplete.*layer4.1.conv2.weight")


def test_wrong_shapes_are_refused(tmp_path, resnet_state_dicts):
    state = dict(resnet_state_dicts[18])
    state["layer1.0.conv1.weight"] = torch.zeros(32, 64, 3, 3)
    _refused(tmp_path, state, "wrong shape.*layer1.0.conv1.weight")


def test_non_resnet_is_refused(tmp_path):
    _refused(tmp_path, {"state_dict": {"features.0.weight": torch.zeros(3)}}, "holds no ResNet weights")
    _refused(tmp_path, {"conv1.weight": torch.zeros(3), "blocks.0.weight": torch.zeros(3)}, "not a ResNet")


def test_key_encoder_alone_is_never_converted(tmp_path, resnet_state_dicts):
    state = {f"encoder_k.{k}": v for k, v in resnet_state_dicts[18].items()}
    _refused(tmp_path, {"state_dict": state}, "key/momentum encoder")


# (online backbone prefix, momentum twin prefix) of common SSL libraries' checkpoints.
MOMENTUM_LAYOUTS = {
    "solo-learn": ("backbone.", "momentum_backbone."),
    "lightly": ("backbone.", "backbone_momentum."),
    "moco_v3": ("module.base_encoder.", "module.momentum_encoder."),
    "byol": ("online_network.", "target_network."),
}


@pytest.mark.parametrize("library", sorted(MOMENTUM_LAYOUTS))
def test_the_online_backbone_is_chosen_over_its_momentum_twin(tmp_path, resnet_state_dicts, library):
    online, momentum = MOMENTUM_LAYOUTS[library]
    state = resnet_state_dicts[18]
    checkpoint = {f"{online}{k}": v for k, v in state.items()} | {
        f"{momentum}{k}": v for k, v in state.items()
    }
    torch.save({"state_dict": checkpoint}, tmp_path / "ckpt.pth")

    report = convert_checkpoint(tmp_path / "ckpt.pth", tmp_path / "out.pkl")

    assert report.prefix == online and report.unexpected == []
    dropped = {k for k in checkpoint if k.startswith(momentum) and not k.endswith("num_batches_tracked")}
    assert set(report.dropped["key (momentum) encoder"]) == dropped


@pytest.mark.parametrize("prefix", ["schema_model.", "emanet.", "targets."])
def test_names_merely_containing_a_momentum_word_are_online_backbones(tmp_path, resnet_state_dicts, prefix):
    torch.save({f"{prefix}{k}": v for k, v in resnet_state_dicts[18].items()}, tmp_path / "ckpt.pth")
    assert convert_checkpoint(tmp_path / "ckpt.pth", tmp_path / "out.pkl").prefix == prefix


def test_several_online_backbones_name_the_convert_command(tmp_path, resnet_state_dicts):
    state = resnet_state_dicts[18]
    two = {f"student.{k}": v for k, v in state.items()} | {f"backbone.{k}": v for k, v in state.items()}
    path = tmp_path / "two.pth"
    torch.save(two, path)
    with pytest.raises(TransferError) as caught:
        convert_checkpoint(path, tmp_path / "out.pkl")
    message = str(caught.value)
    assert "['backbone.', 'student.']" in message
    assert f"python -m transfer.convert {path} OUT.pkl --prefix backbone." in message
    assert "MODEL.WEIGHTS OUT.pkl" in message


def _se_resnet(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A squeeze-and-excitation ResNet: every tensor of `state` plus an SE block in layer1.0."""
    return dict(state) | {
        "layer1.0.se.fc1.weight": torch.zeros(4, 64, 1, 1),
        "layer1.0.se.fc1.bias": torch.zeros(4),
    }


def test_layers_a_plain_resnet_lacks_are_refused_unless_allowed(tmp_path, resnet_state_dicts, capsys):
    source = tmp_path / "se_resnet.pth"
    torch.save(_se_resnet(resnet_state_dicts[18]), source)
    _refused(
        tmp_path,
        _se_resnet(resnet_state_dicts[18]),
        r"2 tensors .*layer1\.0\.se\.fc1\.bias.*--allow-unexpected",
    )

    report = convert_checkpoint(source, tmp_path / "out.pkl", allow_unexpected=True)
    assert report.unexpected == ["layer1.0.se.fc1.bias", "layer1.0.se.fc1.weight"]
    assert report.converted == len(expected_backbone_shapes(18))

    assert main([str(source), str(tmp_path / "cli.pkl")]) == 2
    assert "a plain ResNet does not have" in capsys.readouterr().err
    assert main([str(source), str(tmp_path / "cli.pkl"), "--allow-unexpected"]) == 0
    assert "unexpected 2: layer1.0.se.fc1.bias, layer1.0.se.fc1.weight" in capsys.readouterr().out


def test_heads_beside_a_prefixed_backbone_are_dropped_not_unexpected(tmp_path, resnet_state_dicts):
    """SwAV layout: the projection head and prototypes sit under the backbone's `module.` prefix."""
    state = {f"module.{k}": v for k, v in resnet_state_dicts[18].items()}
    heads = {
        "module.projection_head.0.weight": torch.zeros(4, 512),
        "module.prototypes.weight": torch.zeros(3, 4),
    }
    torch.save({"state_dict": state | heads}, tmp_path / "swav.pth")
    report = convert_checkpoint(tmp_path / "swav.pth", tmp_path / "out.pkl")
    assert report.unexpected == [] and set(report.dropped["heads"]) == set(heads)


class _Unsafe:
    """Any class outside torch's allowlist: loading it needs a full unpickler."""


def test_checkpoint_needing_full_unpickling_is_refused(tmp_path, resnet_state_dicts):
    _refused(
        tmp_path,
        {"state_dict": resnet_state_dicts[18], "extra": _Unsafe()},
        "needs full unpickling .it stores a Python object, .*_Unsafe,",
    )


def test_a_downloaded_error_page_is_named_as_not_a_pytorch_file(tmp_path):
    page = tmp_path / "densecl_r50_coco_1600ep.pth"
    page.write_text("<!DOCTYPE html><html><body>Google Drive - quota exceeded</body></html>")
    with pytest.raises(TransferError, match="is not a PyTorch file: it starts with b'<!DOCTYPE html>"):
        convert_checkpoint(page, tmp_path / "out.pkl")
    assert not (tmp_path / "out.pkl").exists()


def test_cli_reports_and_exits_2_on_bad_input(tmp_path, resnet_state_dicts, capsys):
    torch.save(_layout("moco", resnet_state_dicts[18])[0], tmp_path / "moco.pth.tar")
    assert main([str(tmp_path / "moco.pth.tar"), str(tmp_path / "out.pkl")]) == 0
    out = capsys.readouterr().out
    assert "ResNet-18 backbone under prefix 'module.encoder_q.'" in out and "key (momentum) encoder" in out
    assert main([str(tmp_path / "missing.pth"), str(tmp_path / "out2.pkl")]) == 2
    assert "does not exist" in capsys.readouterr().err
