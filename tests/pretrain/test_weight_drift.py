"""pretrain.weight_drift: the rebuilt initialisation is the engine's, and the per-stage drift it reports."""

import pytest
import torch
import torch.nn.functional as F
from pretrain_testutils import tiny_cfg

from pretrain import checkpoint
from pretrain.engine import Trainer
from pretrain.weight_drift import drift, initial_state, main, stage


@pytest.mark.parametrize("method", ["densecl", "supervised"])
def test_the_rebuilt_initialisation_is_the_engines(tiny_root, tmp_path, method):
    out = tmp_path / method
    cfg = tiny_cfg(method, **{"DATA.ROOT": str(tiny_root), "OUTPUT_DIR": str(out), "SOLVER.MAX_ITERS": 2})
    cfg.DATA.DATASET = "imagenet" if method == "supervised" else "coco"
    cfg.freeze()
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.model.export_state_dict().items()}
    trainer.train()

    rebuilt = initial_state(cfg, num_classes=2 if method == "supervised" else 0)
    for key, value in before.items():
        assert torch.equal(rebuilt[key], value), key
    stages = drift(out)
    assert list(stages) == ["stem", "res2", "res3", "res4", "res5"]
    stem = "conv1.weight" if method == "supervised" else "encoder_q.backbone.conv1.weight"
    w0, w = before[stem], checkpoint.load(out / "model_final.pth")["state_dict"][stem]
    rel, cos = stages["stem"]
    assert rel > 0 and rel == pytest.approx(float((w - w0).norm() / w0.norm()), rel=1e-5)
    assert cos == pytest.approx(float(F.cosine_similarity(w.flatten(), w0.flatten(), dim=0)))


def test_stage_names_follow_detectron2():
    assert stage("encoder_q.backbone.conv1.weight") == "stem"
    assert stage("layer1.0.conv1.weight") == "res2"
    assert stage("encoder_q.backbone.layer4.1.downsample.0.weight") == "res5"


def test_a_directory_without_a_finished_run_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'config.yaml'} does not exist" in err and "finished pretrain.train_net" in err


def test_a_checkpoint_that_is_not_a_final_model_is_a_clear_error(tmp_path, capsys):
    cfg = tiny_cfg("densecl", **{"OUTPUT_DIR": str(tmp_path)})
    (tmp_path / "config.yaml").write_text(cfg.dump())
    torch.save({"model": {}, "iteration": 3}, tmp_path / "model_final.pth")  # a training state instead
    assert main([str(tmp_path)]) == 2
    assert "has no 'state_dict'; expected a model_final.pth" in capsys.readouterr().err
    (tmp_path / "model_final.pth").write_bytes(b"not a checkpoint")
    assert main([str(tmp_path)]) == 2
    assert "pass the OUTPUT_DIR of a finished run" in capsys.readouterr().err
