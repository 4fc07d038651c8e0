"""The runner's ETA: the profile's expected durations (scaled by the speed probe) until jobs of a kind have
finished, then those jobs' own mean; and the probe and expected_wall_s validation behind it."""

import copy
import json
import math
import sys
from pathlib import Path

import pytest
from fake_jobs import settings

import benchmarks.__main__ as cli
import benchmarks.speed_probe as speed_probe
from benchmarks.evaluate import estimate
from benchmarks.jobs import CellKey, Job
from benchmarks.profile import BenchmarkError, build_profile, load_profile
from benchmarks.runner import Runner, StateFile
from transfer.runtime import cpu_has_native_bf16


def _job(tmp_path: Path, job_id: str, kind: str, task: str | None = None) -> Job:
    cell = CellKey("table1", task, "random", 0) if task else None
    return Job(job_id, kind, ["true"], tmp_path / f"{job_id}.done", tmp_path / f"{job_id}.log", cell=cell)


def _runner(tmp_path: Path, expected: dict[str, float]) -> Runner:
    jobs = [
        _job(tmp_path, "pretrain/a", "pretrain"),
        _job(tmp_path, "cell/voc/0", "cell", "voc_det"),
        _job(tmp_path, "cell/voc/1", "cell", "voc_det"),
        _job(tmp_path, "cell/coco/0", "cell", "coco_det_inst"),
    ]
    runner = Runner(
        jobs, StateFile(tmp_path / "state.json"), None, 2, echo=lambda _: None, git_rev="x", expected=expected
    )
    runner.status = {job.id: "pending" for job in jobs}
    return runner


def test_eta_before_any_job_comes_from_the_expected_durations(tmp_path):
    runner = _runner(tmp_path, {"pretrain": 600.0, "cell/voc_det": 60.0, "cell/coco_det_inst": 240.0})
    assert runner._eta() == "8m00s"  # (600 + 2 x 60 + 240) / 2 jobs at a time
    assert _runner(tmp_path / "none", {})._eta() == "?"


def test_eta_uses_each_tasks_own_finished_cells_over_the_expectation(tmp_path):
    runner = _runner(tmp_path, {"pretrain": 600.0, "cell/voc_det": 60.0, "cell/coco_det_inst": 240.0})
    runner.state.update("cell/voc/0", status="done", wall_s=180.0)
    runner.status["cell/voc/0"] = "done"
    assert runner._eta() == "8m30s"  # (600 + 180 measured + 240) / 2: COCO keeps its own expectation


def _smoke_with(expected):
    raw = copy.deepcopy(load_profile("smoke").raw)
    raw["expected_wall_s"] = expected
    return build_profile(raw, "smoke-with-expectations")


def test_expected_wall_s_is_validated():
    with pytest.raises(BenchmarkError, match="probe_s"):
        _smoke_with({"pretrain": 30})
    with pytest.raises(BenchmarkError, match="cell/voc_det"):
        _smoke_with({"probe_s": 0.3, "cell/vocdet": 30})
    with pytest.raises(BenchmarkError, match="positive number"):
        _smoke_with({"probe_s": 0.3, "pretrain": -1})
    with pytest.raises(BenchmarkError, match=r"expected_wall_s\.bfloat16: expected a mapping with probe_s"):
        _smoke_with({"probe_s": 0.3, "bfloat16": {"pretrain": 30}})
    profile = _smoke_with({"probe_s": 0.3, "cell/voc_det": 30, "bfloat16": {"probe_s": 0.1, "data": 5}})
    assert profile.expected_wall_s == {
        "probe_s": 0.3,
        "cell/voc_det": 30.0,
        "bfloat16": {"probe_s": 0.1, "data": 5.0},
    }
    assert load_profile("smoke").expected_wall_s == {}


def test_expected_durations_scale_with_this_machines_probe(monkeypatch):
    def fake_run(argv, **kwargs):
        assert argv[:3] == [sys.executable, "-m", "benchmarks.speed_probe"]
        assert kwargs["env"]["OMP_NUM_THREADS"] == "2"

        class Done:
            stdout = json.dumps({"probe_s": 0.6, "device": "cpu", "bf16_native": False}) + "\n"

        return Done()

    monkeypatch.setattr(speed_probe.subprocess, "run", fake_run)
    got = speed_probe.expected_from_probe({"probe_s": 0.2, "pretrain": 100.0, "data": 10.0}, threads=2)
    assert got.seconds == pytest.approx({"pretrain": 300.0, "data": 30.0})
    assert (got.probe_s, got.reference_probe_s, got.calibration) == (0.6, 0.2, "fp32")
    assert speed_probe.expected_from_probe({"pretrain": 100.0}, threads=2) is None


@pytest.mark.parametrize(
    ("bf16_native", "calibration", "pretrain_s"), [(False, "fp32", 300.0), (True, "bfloat16", 120.0)]
)
def test_a_native_bfloat16_cpu_scales_the_bfloat16_calibration(
    monkeypatch, bf16_native, calibration, pretrain_s
):
    class Done:
        stdout = json.dumps({"probe_s": 0.6, "device": "cpu", "bf16_native": bf16_native}) + "\n"

    monkeypatch.setattr(speed_probe.subprocess, "run", lambda argv, **kwargs: Done())
    expected = {"probe_s": 0.2, "pretrain": 100.0, "bfloat16": {"probe_s": 0.5, "pretrain": 100.0}}
    got = speed_probe.expected_from_probe(expected, threads=1)
    assert got.calibration == calibration and got.seconds == pytest.approx({"pretrain": pretrain_s})


def test_probe_prints_one_json_line_of_a_training_step(capsys):
    assert speed_probe.main(["--threads", "1"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    result = json.loads(line)
    assert set(result) == {"probe_s", "device", "bf16_native"}
    assert math.isfinite(result["probe_s"]) and result["probe_s"] > 0
    assert result["bf16_native"] == (result["device"] == "cpu" and cpu_has_native_bf16())


def test_the_real_probe_subprocess_scales_the_expectations():
    """No fake: `python -m benchmarks.speed_probe` runs, and what it prints is what the scaling reads."""
    got = speed_probe.expected_from_probe({"probe_s": 0.2, "pretrain": 100.0}, threads=1)
    assert got is not None and got.calibration == "fp32" and got.reference_probe_s == 0.2
    assert got.probe_s > 0 and got.seconds == pytest.approx({"pretrain": 100.0 * got.probe_s / 0.2})


def _fake_probe(monkeypatch, probe_s: float) -> None:
    """The speed probe's subprocess answers `probe_s` on the CPU."""

    class Done:
        stdout = json.dumps({"probe_s": probe_s, "device": "cpu", "bf16_native": False}) + "\n"

    monkeypatch.setattr(speed_probe.subprocess, "run", lambda argv, **kwargs: Done())


@pytest.mark.parametrize("command", [["reproduce", "--dry-run"], ["plan"]])
def test_a_dry_run_ends_with_the_estimate_for_this_machine(tmp_path, monkeypatch, capsys, command):
    _fake_probe(monkeypatch, 0.4)  # twice as slow as the machine the expectations were measured on
    expected = "expected_wall_s={probe_s: 0.2, data: 10, cell/voc_det: 30}"
    argv = [*command, "--profile", "smoke", "--tables", "1", "--rows", "random"]
    assert cli.main([*argv, "--jobs", "2", "--set", *settings(tmp_path), expected]) == 0
    out = capsys.readouterr().out
    assert "estimates scale them by 2.00" in out
    assert "estimate: 2 job(s) to run ~ 0m40s at 2 job(s) at a time" in out  # (2 x 10 + 2 x 30) / 2
    assert not (tmp_path / "out" / "state.json").exists()  # a dry run runs nothing


def test_a_dry_run_without_expectations_says_it_has_no_estimate(tmp_path, capsys):
    argv = ["reproduce", "--profile", "smoke", "--tables", "1", "--rows", "random", "--dry-run"]
    assert cli.main([*argv, "--set", *settings(tmp_path)]) == 0
    assert "estimate: none (the profile sets no expected_wall_s" in capsys.readouterr().out


def test_evaluate_estimates_tasks_without_finished_cells_from_the_expectation(tmp_path):
    jobs = [_job(tmp_path, "cell/v/0", "cell", "voc_det"), _job(tmp_path, "cell/s/0", "cell", "voc_sem_seg")]
    lines = estimate(jobs, {}, 50, 18, 1, {"cell/voc_det": 100.0})
    assert lines[0].startswith("estimate: 1 cell(s) of voc_det ~ 3m45s at 1 job(s)")  # 100 s x 4.09 / 1.81
    assert "expected_wall_s scaled to this machine" in lines[0] and "FLOP ratio R-50/R-18" in lines[0]
    assert lines[1].startswith("estimate: no finished cell of voc_sem_seg")


@pytest.mark.parametrize("command", ["reproduce", "evaluate"])
def test_a_run_that_cannot_start_is_refused_before_the_speed_probe(tmp_path, monkeypatch, capsys, command):
    import torch
    import torchvision

    def no_probe(argv, **kwargs):
        raise AssertionError("the speed probe ran for a run that preflight refuses")

    monkeypatch.setattr(speed_probe.subprocess, "run", no_probe)
    argv = ["reproduce", "--rows", "random"]
    if command == "evaluate":
        checkpoint = tmp_path / "r18.pth"
        torch.save(torchvision.models.resnet18().state_dict(), checkpoint)
        argv = ["evaluate", "--checkpoint", str(checkpoint), "--name", "mine"]
    profile = tmp_path / "paper_expected.yaml"  # with expectations, so a run would probe this machine
    profile.write_text("_BASE_: paper\nexpected_wall_s: {probe_s: 0.2, cell/voc_det: 30}\n")
    assert cli.main([*argv, "--profile", str(profile), "--tables", "1", "--set", *settings(tmp_path)]) == 2
    assert "paper_expected cannot run: Dataset directories missing" in capsys.readouterr().err  # none here
    assert not (tmp_path / "out" / "custom_rows.json").exists()


@pytest.mark.parametrize("jobs", ["0", "-2", "two"])
@pytest.mark.parametrize("command", ["reproduce", "evaluate", "plan"])
def test_jobs_must_be_a_positive_count(capsys, command, jobs):
    """--jobs 0 divided the ETA by zero and --jobs -2 made it negative: refused when parsing."""
    extra = ["--checkpoint", "x.pth", "--name", "mine"] if command == "evaluate" else []
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args([command, *extra, "--jobs", jobs])
    assert exit_info.value.code == 2
    assert (
        f"argument --jobs: expected a whole number of at least 1, e.g. 2; got '{jobs}'"
        in capsys.readouterr().err
    )
