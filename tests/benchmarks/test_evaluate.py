"""`python -m benchmarks evaluate`: a user's checkpoint becomes a row next to the existing ones.

MoCo `.pth.tar` and torchvision state dicts (R-18 shapes) are registered, converted and fine-tuned by fake
commands; existing results stay untouched, a re-run is a no-op, names and checkpoints are checked, and an
R-50 under the R-18 profile switches its cells' depth after printing a time estimate.
"""

import json

import pandas as pd
import pytest
import torch
import torchvision
from fake_jobs import FakeCommands, calls, settings

import benchmarks.__main__ as cli
from benchmarks.custom_rows import custom_row
from benchmarks.evaluate import RESNET_GFLOPS
from benchmarks.jobs import Selection, build_graph
from benchmarks.matrix import Matrix
from benchmarks.profile import load_profile
from benchmarks.runner import OutputLock, format_duration
from transfer.resnet_layout import expected_backbone_shapes


def _moco_checkpoint(path):
    """MoCo v2 layout: module.encoder_q/encoder_k with an MLP head in fc, queues, under state_dict."""
    backbone = {
        k: v for k, v in torchvision.models.resnet18().state_dict().items() if not k.startswith("fc.")
    }
    head = {"fc.0.weight": torch.randn(512, 512), "fc.0.bias": torch.zeros(512),
            "fc.2.weight": torch.randn(128, 512), "fc.2.bias": torch.zeros(128)}  # fmt: skip
    state = {f"module.encoder_{e}.{k}": v for e in "qk" for k, v in {**backbone, **head}.items()}
    state["module.queue"] = torch.randn(128, 16)
    torch.save({"epoch": 200, "arch": "resnet18", "state_dict": state}, path)
    return path


def _torchvision_checkpoint(path):
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def _r50_keys_only(path):
    """Every R-50 key with a 1-element tensor: enough to read the depth, nothing is converted."""
    torch.save({k: torch.zeros(1) for k in expected_backbone_shapes(50)}, path)
    return path


def _run(tmp_path, monkeypatch, *argv):
    monkeypatch.setattr(cli, "CommandBuilder", lambda num_gpus: FakeCommands(tmp_path / "calls.txt"))
    return cli.main([*argv, "--profile", "smoke", "--set", *settings(tmp_path)])


def _existing_results(tmp_path, monkeypatch):
    assert _run(tmp_path, monkeypatch, "reproduce", "--tables", "1", "--rows", "random,densecl_coco") == 0
    return {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("metrics.json")}


@pytest.mark.parametrize("make", [_moco_checkpoint, _torchvision_checkpoint])
def test_evaluate_adds_a_row_without_touching_existing_results(make, tmp_path, monkeypatch, capsys):
    before = _existing_results(tmp_path, monkeypatch)
    old = pd.read_csv(tmp_path / "results" / "results.csv")
    ckpt = make(tmp_path / "mine.pth.tar")
    n_calls = len(calls(tmp_path / "calls.txt"))
    argv = ["evaluate", "--checkpoint", str(ckpt), "--name", "mine", "--tables", "1,table_linear"]
    assert _run(tmp_path, monkeypatch, *argv) == 0
    assert calls(tmp_path / "calls.txt")[n_calls:] == [
        "convert/mine", "cell/voc_det/mine/seed0", "cell/linear_cls/mine/seed0",
    ]  # fmt: skip
    assert {p: p.stat().st_mtime_ns for p in before} == before
    new = pd.read_csv(tmp_path / "results" / "results.csv")
    pd.testing.assert_frame_equal(new[new["row"] != "mine"].reset_index(drop=True), old)
    mine = new[new["row"] == "mine"]
    assert set(mine["task"]) == {"voc_det", "linear_cls"} and set(mine["init"]) == {"custom"}
    table1 = (tmp_path / "results" / "table1.md").read_text()
    assert "| mine (custom) |" in table1 and "| Random init |" in table1 and "32.8 (recalled)" in table1
    assert "| mine (custom) |" in (tmp_path / "results" / "table_linear.md").read_text()
    registry = tmp_path / "out" / "custom_rows.json"
    record = json.loads(registry.read_text())["rows"]["mine"]
    assert record["depth"] == 18 and len(record["sha256"]) == 64 and record["checkpoint"] == str(ckpt)

    capsys.readouterr()
    stamp, n_calls = registry.stat().st_mtime_ns, len(calls(tmp_path / "calls.txt"))
    assert _run(tmp_path, monkeypatch, *argv) == 0  # second run: every marker done
    assert len(calls(tmp_path / "calls.txt")) == n_calls and registry.stat().st_mtime_ns == stamp
    assert "estimate: every cell is already done" in capsys.readouterr().out
    assert _run(tmp_path, monkeypatch, "report") == 0
    assert "| mine (custom) |" in (tmp_path / "results" / "table1.md").read_text()  # report keeps the row


def test_both_layouts_convert_for_real(tmp_path):
    from transfer.convert import convert_checkpoint

    for make in (_moco_checkpoint, _torchvision_checkpoint):
        report = convert_checkpoint(
            make(tmp_path / f"{make.__name__}.pth"), tmp_path / f"{make.__name__}.pkl"
        )
        assert report.depth == 18 and report.converted == len(expected_backbone_shapes(18))


@pytest.mark.parametrize("name", ["../up", "1st", "has space", "random", "densecl_coco_lambda0", "x" * 65])
def test_unsafe_or_taken_names_are_refused(name, tmp_path, monkeypatch, capsys):
    ckpt = _torchvision_checkpoint(tmp_path / "r18.pth")
    assert _run(tmp_path, monkeypatch, "evaluate", "--checkpoint", str(ckpt), "--name", name) == 2
    err = capsys.readouterr().err
    assert f"--name {name!r}" in err and ("safe identifier" in err or "built-in row" in err)
    assert not (tmp_path / "out" / "custom_rows.json").exists()


def _registered_then_another(tmp_path, monkeypatch):
    """Registers a.pth as row `mine` and runs it; returns the evaluate argv (without the checkpoint), a
    second checkpoint b.pth, the row's cell metrics and their mtime."""
    first, second = _torchvision_checkpoint(tmp_path / "a.pth"), _torchvision_checkpoint(tmp_path / "b.pth")
    args = ["evaluate", "--name", "mine", "--tables", "1", "--checkpoint"]
    assert _run(tmp_path, monkeypatch, *args, str(first)) == 0
    cell = tmp_path / "out" / "table1" / "voc_det" / "mine" / "seed0" / "metrics.json"
    return args, second, cell, cell.stat().st_mtime_ns


def _registered_checkpoint(tmp_path) -> str:
    return json.loads((tmp_path / "out" / "custom_rows.json").read_text())["rows"]["mine"]["checkpoint"]


def test_another_checkpoint_under_a_name_needs_force(tmp_path, monkeypatch, capsys):
    args, second, cell, stamp = _registered_then_another(tmp_path, monkeypatch)
    assert _run(tmp_path, monkeypatch, *args, str(second)) == 2
    assert "already holds" in capsys.readouterr().err and cell.stat().st_mtime_ns == stamp
    assert _run(tmp_path, monkeypatch, *args, str(second), "--force") == 0
    assert cell.stat().st_mtime_ns != stamp  # redone from the new checkpoint
    assert calls(tmp_path / "calls.txt").count("convert/mine") == 2
    assert _registered_checkpoint(tmp_path) == str(second)


def test_force_deletes_nothing_while_another_run_holds_the_output(tmp_path, monkeypatch, capsys):
    args, second, cell, stamp = _registered_then_another(tmp_path, monkeypatch)
    capsys.readouterr()
    with OutputLock(tmp_path / "out"):  # e.g. a reproduce still training this row's cells
        assert _run(tmp_path, monkeypatch, *args, str(second), "--force") == 2
    assert "is in use by another run" in capsys.readouterr().err and cell.stat().st_mtime_ns == stamp
    assert _registered_checkpoint(tmp_path) == str(tmp_path / "a.pth")


def test_r50_under_the_r18_profile_switches_depth_and_estimates_time_first(tmp_path, monkeypatch, capsys):
    _existing_results(tmp_path, monkeypatch)
    state = json.loads((tmp_path / "out" / "state.json").read_text())
    state["jobs"]["cell/table1/voc_det/random/seed0"]["wall_s"] = 100.0
    state["jobs"]["cell/table1/voc_det/densecl_coco/seed0"]["wall_s"] = 20.0
    (tmp_path / "out" / "state.json").write_text(json.dumps(state))
    ckpt = _r50_keys_only(tmp_path / "r50.pth")
    capsys.readouterr()
    argv = ["evaluate", "--checkpoint", str(ckpt), "--name", "big", "--tables", "1,table_linear", "--dry-run"]
    assert _run(tmp_path, monkeypatch, *argv) == 0
    out = capsys.readouterr().out
    assert "big: ResNet-50 checkpoint" in out and "switch to R-50" in out
    ratio = RESNET_GFLOPS[50] / RESNET_GFLOPS[18]
    assert f"FLOP ratio R-50/R-18 = {ratio:.1f}" in out
    assert f"1 cell(s) ~ {format_duration(60.0 * ratio)} at 1 job(s)" in out  # the mean of 100 and 20 s
    assert "no finished cell of linear_cls" in out
    assert not (tmp_path / "out" / "custom_rows.json").exists()  # a dry run writes nothing
    assert _run(tmp_path, monkeypatch, *argv[:-1]) == 0
    out = capsys.readouterr().out
    assert out.index("FLOP ratio") < out.index("start   ")

    profile = load_profile("smoke", settings(tmp_path))
    row = custom_row("big", {"checkpoint": str(ckpt), "depth": 50})
    jobs = {
        j.id: j
        for j in build_graph(profile, Selection((1, "table_linear"), ("big",)), None, Matrix(profile, (row,)))
    }
    det = jobs["cell/table1/voc_det/big/seed0"].argv
    assert det.count("MODEL.RESNETS.DEPTH") == 1 and det[det.index("MODEL.RESNETS.DEPTH") + 1] == "50"
    assert det[det.index("MODEL.RESNETS.RES2_OUT_CHANNELS") + 1] == "256"
    linear = jobs["cell/table_linear/linear_cls/big/seed0"].argv
    assert linear[linear.index("MODEL.ARCH") + 1] == "resnet50"
    assert jobs["convert/big"].argv[-2:] == [str(ckpt), str(tmp_path / "out" / "weights" / "big.pkl")]


def test_ablation_tables_are_refused_for_a_checkpoint(tmp_path, monkeypatch, capsys):
    ckpt = _torchvision_checkpoint(tmp_path / "r18.pth")
    argv = ["evaluate", "--checkpoint", str(ckpt), "--name", "mine", "--tables", "ablation_grid"]
    assert _run(tmp_path, monkeypatch, *argv) == 2
    assert "ablation tables compare pretraining variants" in capsys.readouterr().err
