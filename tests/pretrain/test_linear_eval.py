"""Linear probe and kNN classification of a frozen backbone (pretrain.linear_eval)."""

import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from pretrain import linear_eval
from pretrain.errors import PretrainError
from pretrain.linear_probe.config import load_linear_cfg
from pretrain.linear_probe.engine import LinearEvaluation
from pretrain.linear_probe.knn import knn_class_scores, topk_accuracy
from pretrain.linear_probe.weights import load_backbone_weights
from transfer.convert import convert_checkpoint
from transfer.errors import TransferError
from transfer.resnet_layout import expected_backbone_shapes

TINY_CFG = "pretrain/configs/linear_R18_tiny.yaml"
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 220), (230, 220, 40)]  # one class each


def write_colour_folder(root: Path, per_class: dict[str, int], size: int = 32, seed: int = 0) -> Path:
    """ROOT/imagenet/<split>/cNN/*.png: noisy solid-colour images, one colour per class (separable)."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for label, colour in enumerate(COLOURS):
            folder = root / "imagenet" / split / f"c{label:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                noise = rng.normal(0, 12, (size, size, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{split}_{i:03d}.png")
    return root


@pytest.fixture()
def colour_root(tmp_path) -> Path:
    return write_colour_folder(tmp_path / "datasets", {"train": 8, "val": 4})


def resnet18_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision resnet18 state dict with non-trivial BN running statistics."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet18()
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.normal_(0, 0.1)
        elif key.endswith("running_var"):
            value.uniform_(0.5, 2.0)
    return state


def tiny_opts(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "DATA.ROOT", str(root), "DATA.IMAGE_SIZE", "32", "SOLVER.BATCH_SIZE", "8",
        "SOLVER.EPOCHS", "2", "SOLVER.STEPS", "[1]", "OUTPUT_DIR", str(out), *extra,
    ]  # fmt: skip


# --- kNN ------------------------------------------------------------------------------------------


def knn_scores_reference(query, bank, labels, num_classes, k, temperature):
    """Slow, obviously correct weighted kNN vote (Wu et al. 2018): one query, one neighbour at a time."""
    out = torch.zeros(len(query), num_classes, dtype=torch.float64)
    for i, q in enumerate(query.double()):
        sims = [float(q @ b / (q.norm() * b.norm())) for b in bank.double()]
        for j in sorted(range(len(bank)), key=lambda j: -sims[j])[:k]:
            out[i, int(labels[j])] += math.exp(sims[j] / temperature)
    return out


@pytest.mark.parametrize(
    ("k", "temperature", "chunk"), [(1, 0.07, 256), (5, 0.07, 3), (20, 0.5, 4), (50, 0.1, 7)]
)
def test_knn_scores_match_slow_reference(k, temperature, chunk):
    g = torch.Generator().manual_seed(k)
    query, bank = torch.randn(11, 8, generator=g) * 3, torch.randn(30, 8, generator=g)
    labels = torch.randint(0, 4, (30,), generator=g)
    fast = knn_class_scores(query, bank, labels, 4, k=k, temperature=temperature, chunk_size=chunk)
    slow = knn_scores_reference(query, bank, labels, 4, min(k, 30), temperature)
    torch.testing.assert_close(fast.double(), slow, rtol=1e-4, atol=1e-6)
    assert torch.equal(fast.argmax(1), slow.argmax(1))


def test_a_normalised_half_precision_bank_votes_like_the_float_one():
    """The engine's GPU bank: L2-normalised once, stored in float16 (ImageNet: 5.2 GB, not a ~21 GB peak)."""
    g = torch.Generator().manual_seed(0)
    query, bank = torch.randn(11, 8, generator=g), torch.randn(30, 8, generator=g)
    labels = torch.randint(0, 4, (30,), generator=g)
    half = torch.nn.functional.normalize(bank, dim=1).half()
    fast = knn_class_scores(query, half, labels, 4, k=5, temperature=0.07, bank_is_normalized=True)
    slow = knn_scores_reference(query, bank, labels, 4, 5, 0.07)
    torch.testing.assert_close(fast.double(), slow, rtol=2e-2, atol=1e-3)  # float16 similarities / 0.07
    assert torch.equal(fast.argmax(1), slow.argmax(1))


def test_knn_votes_are_weighted_not_counted():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])  # one very close class-0 neighbour, two class-1
    scores = knn_class_scores(
        torch.tensor([[1.0, 0.05]]), bank, torch.tensor([0, 1, 1]), 2, k=3, temperature=0.07
    )
    assert scores.argmax().item() == 0


def test_topk_accuracy_caps_k_at_class_count():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 2, 1])
    assert topk_accuracy(scores, labels, (1, 2, 5)) == pytest.approx([100 / 3, 200 / 3, 100.0])


# --- weights --------------------------------------------------------------------------------------


def test_weights_round_trip_pkl_and_raw(tmp_path):
    state = resnet18_state()
    raw = tmp_path / "resnet18.pth"
    torch.save(state, raw)
    pkl = tmp_path / "resnet18.pkl"
    convert_checkpoint(raw, pkl)
    moco = tmp_path / "moco.pth.tar"
    torch.save(
        {
            "state_dict": {
                **{f"module.encoder_q.{k}": v for k, v in state.items()},
                **{f"module.encoder_k.{k}": torch.zeros_like(v) for k, v in state.items()},
            }
        },
        moco,
    )
    expected = expected_backbone_shapes(18)
    for path in (raw, pkl, moco):
        loaded = load_backbone_weights(str(path), 18)
        assert list(loaded) == list(expected), path
        for key in expected:
            assert torch.equal(loaded[key], state[key].float()), (path, key)


def test_weights_detectron2_checkpoint_with_prefix(tmp_path):
    state = resnet18_state()
    pkl = tmp_path / "r18.pkl"
    torch.save(state, tmp_path / "r18.pth")
    convert_checkpoint(tmp_path / "r18.pth", pkl)
    with open(pkl, "rb") as f:
        d2 = pickle.load(f)["model"]
    d2_pth = tmp_path / "model_final.pth"
    torch.save(
        {"model": {f"backbone.{k}": torch.from_numpy(v) for k, v in d2.items()}, "iteration": 5}, d2_pth
    )
    loaded = load_backbone_weights(str(d2_pth), 18)
    assert torch.equal(loaded["layer3.1.bn2.running_var"], state["layer3.1.bn2.running_var"])


def test_weights_missing_keys_name_file_and_keys(tmp_path):
    state = resnet18_state()
    torch.save(state, tmp_path / "r18.pth")
    pkl = tmp_path / "r18.pkl"
    convert_checkpoint(tmp_path / "r18.pth", pkl)
    with open(pkl, "rb") as f:
        payload = pickle.load(f)
    del payload["model"]["res4.1.conv2.norm.running_var"]
    with open(pkl, "wb") as f:
        pickle.dump(payload, f)
    with pytest.raises(PretrainError, match=r"r18\.pkl.*1 of the .*layer3\.1\.bn2\.running_var"):
        load_backbone_weights(str(pkl), 18)

    del state["layer2.0.downsample.1.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(TransferError, match=r"partial\.pth.*layer2\.0\.downsample\.1\.weight"):
        load_backbone_weights(str(tmp_path / "partial.pth"), 18)


def test_weights_other_depth_names_the_arch(tmp_path):
    torch.save(resnet18_state(), tmp_path / "r18.pth")
    convert_checkpoint(tmp_path / "r18.pth", tmp_path / "r18.pkl")
    for name in ("r18.pth", "r18.pkl"):
        with pytest.raises(PretrainError, match=r"ResNet-18 backbone but MODEL\.ARCH is resnet34"):
            load_backbone_weights(str(tmp_path / name), 34)
    with pytest.raises(PretrainError, match="does not exist"):
        load_backbone_weights(str(tmp_path / "nope.pth"), 18)


# --- end to end -----------------------------------------------------------------------------------


def test_backbone_and_bn_statistics_stay_frozen(colour_root, tmp_path):
    state = resnet18_state()
    torch.save(state, tmp_path / "r18.pth")
    cfg = load_linear_cfg(
        TINY_CFG, tiny_opts(colour_root, tmp_path / "out", "MODEL.WEIGHTS", str(tmp_path / "r18.pth"))
    )
    evaluation = LinearEvaluation(cfg)
    before = {k: v.clone() for k, v in evaluation.backbone.trunk.state_dict().items()}
    for key in expected_backbone_shapes(18):
        assert torch.equal(before[key], state[key]), key  # loaded from the file
    metrics, iters = evaluation.run()
    assert iters == 2 * (32 // 8)
    assert set(metrics) == {"top1", "top5", "knn_top1"}
    after = evaluation.backbone.trunk.state_dict()
    assert set(after) == set(before)
    for key, value in after.items():
        assert torch.equal(value, before[key]), key  # weights, BN running mean/var and batch counters
    assert not evaluation.backbone.training and not any(m.training for m in evaluation.backbone.modules())
    assert not any(p.requires_grad for p in evaluation.backbone.parameters())


def test_cli_writes_metrics_once(colour_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert linear_eval.main(["--config-file", TINY_CFG, *tiny_opts(colour_root, out)]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["task"] == "linear_cls"
    assert set(record["metrics"]) == {"top1", "top5", "knn_top1"}
    assert all(0.0 <= v <= 100.0 for v in record["metrics"].values())
    assert record["metrics"]["top5"] == 100.0  # 4 classes: top-5 is capped at the class count
    assert (record["weights"], record["config_file"], record["iters"]) == ("", TINY_CFG, 8)
    assert (record["ims_per_batch"], record["base_lr"]) == (8, load_linear_cfg(TINY_CFG, []).SOLVER.BASE_LR)
    assert record["wall_s"] > 0
    assert "SOLVER" in (out / "config.yaml").read_text() and "val: top-1" in (out / "log.txt").read_text()

    shutil.rmtree(colour_root)  # a re-run must not touch the data: metrics.json says it is done
    before = (out / "metrics.json").read_text()
    assert linear_eval.main(["--config-file", TINY_CFG, *tiny_opts(colour_root, out)]) == 0
    assert (out / "metrics.json").read_text() == before
    assert "nothing to do" in capsys.readouterr().out


def test_linear_probe_separates_trivial_classes(tmp_path):
    root = write_colour_folder(tmp_path / "datasets", {"train": 16, "val": 8}, seed=1)
    cfg = load_linear_cfg(
        TINY_CFG, tiny_opts(root, tmp_path / "out", "SOLVER.EPOCHS", "4", "SOLVER.STEPS", "[3]")
    )
    metrics, _ = LinearEvaluation(cfg).run()
    assert metrics["top1"] >= 75.0  # chance is 25; measured 100 (random-init R-18)
    assert metrics["knn_top1"] >= 75.0


# --- bad input ------------------------------------------------------------------------------------


def test_bad_input_is_one_error_paragraph(colour_root, tmp_path, capsys):
    out = tmp_path / "out"

    def error(root, *opts) -> str:
        assert linear_eval.main(["--config-file", TINY_CFG, *tiny_opts(root, out, *opts)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err and err.strip().count("\n\n") == 0, err
        return err

    assert "SOLVER.LR" in error(colour_root, "SOLVER.LR", "1.0")
    empty = tmp_path / "empty"
    assert f"{empty}/imagenet/train is missing" in error(empty)
    (colour_root / "imagenet" / "val" / "c99").mkdir()
    assert "class folders that the train split lacks: c99" in error(colour_root)
    assert not (out / "metrics.json").exists()
