"""The whole chain on the `smoke` profile, the way a user runs it: `python -m benchmarks reproduce`.

One real run is interrupted once a fine-tuning cell has finished, then run again: the second run must
finish every cell without recomputing the ones the first run completed (issue: resumable reproduce).
"""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def _reproduce_cmd(out: Path, data_root: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks",
        "reproduce",
        "--profile",
        "smoke",
        "--jobs",
        "2",
        "--set",
        f"output_dir={out / 'output'}",
        f"results_dir={out / 'results'}",
        f"data.root={data_root}",
    ]


def _finished_cells(out: Path) -> dict[Path, int]:
    """metrics.json of every finished fine-tuning cell -> its modification time (ns)."""
    return {p: p.stat().st_mtime_ns for p in (out / "output").rglob("metrics.json")}


@pytest.mark.slow
def test_smoke_reproduce_interrupted_then_resumed(synthetic_root, tmp_path):
    cmd = _reproduce_cmd(tmp_path, synthetic_root)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    # Ctrl-C as in a terminal; SIGINT back to its default first, since a shell running this suite in the
    # background (`cmd &`) starts it with SIGINT ignored, which Python would then keep for the child.
    first = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while not _finished_cells(tmp_path) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert first.poll() is None, "reproduce ended before any cell finished: nothing was interrupted"
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=60) != 0, "an interrupted reproduce must not exit 0"
    done_before = _finished_cells(tmp_path)
    assert done_before, "the interrupted run left no finished cell"

    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=420)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]

    done_after = _finished_cells(tmp_path)
    for path, mtime in done_before.items():
        assert done_after[path] == mtime, f"{path} was recomputed after the resume"

    results = pd.read_csv(tmp_path / "results" / "results.csv")
    expected = {
        "voc_det": {"AP", "AP50", "AP75"},
        "coco_det_inst": {"APb", "APb50", "APb75", "APm", "APm50", "APm75"},
        "voc_sem_seg": {"mIoU"},
        "cityscapes_sem_seg": {"mIoU"},
    }
    for task, metrics in expected.items():
        rows = results[results.task == task]
        assert metrics <= set(rows.metric), f"{task}: missing metrics {metrics - set(rows.metric)}"
        assert all(math.isfinite(v) for v in rows.value), f"{task}: non-finite values"
    table1 = results[results.task == "voc_det"]
    assert set(table1.init) >= {"random", "supervised", "mocov2", "densecl"}
    for name in ("table1", "table2", "table3"):
        for ext in ("csv", "md", "png"):
            assert (tmp_path / "results" / f"{name}.{ext}").stat().st_size > 0

    third = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0
    assert _finished_cells(tmp_path) == done_after, "a finished run re-ran cells"


def _benchmarks(out: Path, data_root: Path, *args: str) -> subprocess.CompletedProcess:
    paths = [f"output_dir={out / 'output'}", f"results_dir={out / 'results'}", f"data.root={data_root}"]
    cmd = [sys.executable, "-m", "benchmarks", *args, "--profile", "smoke", "--jobs", "2", "--set", *paths]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_smoke_lambda_ablation_linear_probe_and_evaluate(synthetic_root, tmp_path):
    """Issue 6 for real at smoke scale: the lambda ablation (VOC AP + linear top-1 per lambda, the
    lambda 0.5 row being the main DenseCL run), then a user's torchvision ResNet-18 as a new row."""
    import torch
    import torchvision

    ablation = _benchmarks(tmp_path, synthetic_root, "reproduce", "--tables", "ablation_lambda")
    assert ablation.returncode == 0, ablation.stdout[-3000:] + ablation.stderr[-3000:]
    results = pd.read_csv(tmp_path / "results" / "results.csv")
    rows = {"densecl_coco_lambda0", "densecl_coco", "densecl_coco_lambda1"}  # smoke: lambda 0, 0.5, 1
    for task, metric in (("voc_det", "AP"), ("linear_cls", "top1"), ("linear_cls", "knn_top1")):
        got = results[(results.task == task) & (results.metric == metric)]
        assert rows <= set(got.row), f"{task}/{metric}: rows {sorted(set(got.row))}"
        assert got.value.between(0, 100).all()
    for ext in ("csv", "md", "png"):
        assert (tmp_path / "results" / f"ablation_lambda.{ext}").stat().st_size > 0
    pretrained = list((tmp_path / "output" / "pretrain").glob("densecl_coco*"))
    assert len(pretrained) == 3, pretrained  # lambda 0.5 is densecl_coco itself, not pretrained twice

    ckpt = tmp_path / "resnet18_torchvision.pth"
    torch.save(torchvision.models.resnet18().state_dict(), ckpt)
    before = _finished_cells(tmp_path)
    args = ("evaluate", "--checkpoint", str(ckpt), "--name", "my_r18", "--tables", "1,table_linear")
    first = _benchmarks(tmp_path, synthetic_root, *args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    after = _finished_cells(tmp_path)
    assert all(after[path] == mtime for path, mtime in before.items()), "evaluate touched existing cells"
    results = pd.read_csv(tmp_path / "results" / "results.csv")
    mine = results[results.row == "my_r18"]
    assert {"voc_det", "linear_cls"} <= set(mine.task)
    assert "my_r18" in (tmp_path / "results" / "table1.md").read_text()

    again = _benchmarks(tmp_path, synthetic_root, *args)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert _finished_cells(tmp_path) == after, "re-running evaluate recomputed cells"
