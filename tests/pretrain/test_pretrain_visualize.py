"""The dense-correspondence drawing tool."""

import math
import re

import torch
from PIL import Image
from pretrain_testutils import tiny_cfg

from pretrain.engine import Trainer
from pretrain.visualize_correspondence import cell_centres, main, mutual_matches


def test_mutual_matches_keeps_only_mutual_pairs_above_threshold():
    f1 = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.9]])  # (C=2, P=3)
    f2 = torch.tensor([[0.0, 1.0], [1.0, 0.1]])  # (C=2, P=2)
    # cell 0 -> f2 cell 1 (mutual, ~0.995); cell 1 -> f2 cell 0 (mutual, 1.0); cell 2 -> f2 cell 1, not mutual
    pairs = mutual_matches(f1, f2, threshold=0.9)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1), (1, 0)]
    assert [(i, j) for i, j, _ in mutual_matches(f1, f2, threshold=0.999)] == [(1, 0)]


def test_cell_centres_map_to_pixels():
    centres = cell_centres(2, 2, 64)
    assert centres.tolist() == [[16, 16], [48, 16], [16, 48], [48, 48]]


def test_draws_png_for_a_densecl_checkpoint(tiny_root, tmp_path, capsys):
    # The unit-test config's BN sub-batches of 2 images at 32 px see 2 values per C5 channel, so one step at
    # the default LR 0.03 can scale conv1 up 1000x and overflow C5 to NaN (seen on an AVX2-only CPU);
    # drawing needs a finite checkpoint, not a good one.
    overrides = {
        "DATA.ROOT": str(tiny_root),
        "DATA.DATASET": "coco",
        "SOLVER.MAX_ITERS": 1,
        "SOLVER.BASE_LR": 1e-4,
    }
    cfg = tiny_cfg("densecl", **overrides)
    cfg.OUTPUT_DIR = str(tmp_path / "run")
    Trainer(cfg).train()
    image = next((tiny_root / "coco" / "train2017").iterdir())
    out = tmp_path / "corr.png"
    args = [str(tmp_path / "run" / "model_final.pth"), str(image), "--out", str(out), "--size", "96"]
    assert main([*args, "--threshold", "-1"]) == 0
    assert Image.open(out).format == "PNG"
    found = re.search(r"(\d+) matches", capsys.readouterr().out)
    assert found and 1 <= int(found.group(1)) <= 9  # 96 px -> 3 x 3 C5 cells; the best pair is always mutual


def test_rejects_a_supervised_checkpoint(tiny_root, tmp_path, capsys):
    cfg = tiny_cfg("supervised", **{"DATA.ROOT": str(tiny_root), "SOLVER.MAX_ITERS": 1})
    cfg.OUTPUT_DIR = str(tmp_path / "sup")
    Trainer(cfg).train()
    image = next((tiny_root / "coco" / "train2017").iterdir())
    rc = main([str(tmp_path / "sup" / "model_final.pth"), str(image), "--out", str(tmp_path / "x.png")])
    assert rc == 2 and "densecl or mocov2" in capsys.readouterr().err


def _tampered_mocov2_checkpoint(tiny_root, tmp_path, tamper):
    """A one-iteration MoCo-v2 model_final.pth, changed in place by `tamper(checkpoint dict)`."""
    cfg = tiny_cfg("mocov2", **{"DATA.ROOT": str(tiny_root), "DATA.DATASET": "coco", "SOLVER.MAX_ITERS": 1})
    cfg.OUTPUT_DIR = str(tmp_path / "run")
    Trainer(cfg).train()
    path = tmp_path / "run" / "model_final.pth"
    ckpt = torch.load(path, weights_only=True)
    tamper(ckpt)
    torch.save(ckpt, path)
    return path


def test_names_a_diverged_checkpoint(tiny_root, tmp_path, capsys):
    path = _tampered_mocov2_checkpoint(
        tiny_root,
        tmp_path,
        lambda ckpt: ckpt["state_dict"]["encoder_q.backbone.conv1.weight"].fill_(math.nan),
    )
    image = next((tiny_root / "coco" / "train2017").iterdir())
    assert main([str(path), str(image), "--out", str(tmp_path / "x.png"), "--size", "96"]) == 2
    assert "not finite" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_names_a_file_that_is_no_checkpoint(tiny_root, tmp_path, capsys):
    page = tmp_path / "model_final.pth"
    page.write_text("<html><body>404 Not Found</body></html>")
    image = next((tiny_root / "coco" / "train2017").iterdir())
    assert main([str(page), str(image), "--out", str(tmp_path / "x.png")]) == 2
    assert f"cannot load checkpoint {page}" in capsys.readouterr().err


def test_names_a_checkpoint_whose_arch_does_not_fit_its_weights(tiny_root, tmp_path, capsys):
    path = _tampered_mocov2_checkpoint(
        tiny_root,
        tmp_path,
        lambda ckpt: ckpt["meta"].update(arch="resnet50"),  # resnet18 weights
    )
    image = next((tiny_root / "coco" / "train2017").iterdir())
    assert main([str(path), str(image), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "'resnet50'" in err and "do not make a ResNet trunk" in err
