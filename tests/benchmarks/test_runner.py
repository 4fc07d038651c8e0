"""The runner on the real job graph with fake commands (tiny `python -c` scripts writing the markers).

Checks: finished jobs are never rerun, a failure is isolated and recorded and its dependants skipped,
the CLI exit code, and a run killed mid-graph resumes (pretraining restarted with --resume).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import benchmarks.__main__ as cli
from benchmarks.executors import LocalExecutor
from benchmarks.jobs import Job, Selection, build_graph, log_to_wandb, make_data_stamp
from benchmarks.profile import load_profile
from benchmarks.runner import Runner, StateFile, changed_inputs

REPO = Path(__file__).resolve().parents[2]

# Written into tmp_path so that the runner subprocess of the interruption test can import it too.
FAKE_MODULE = r'''
"""CommandBuilder whose commands record their call in a counter file and write the job's marker."""
import json
import sys
from pathlib import Path

from benchmarks.experiments import ROWS, TASKS
from benchmarks.jobs import CommandBuilder, make_data_stamp

SCRIPT = """
import sys, time
from pathlib import Path
marker, counter, job, flags, payload = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
with open(counter, "a") as f:
    f.write(job + " " + flags + "\\n")
print("running", job)
if "fail" in flags:
    sys.exit("boom: simulated failure of " + job)
marker.parent.mkdir(parents=True, exist_ok=True)
if "slow" in flags and "resume" not in flags:
    (marker.parent / "checkpoint_last.pth").write_text("partial")
    time.sleep(60)
(marker.parent / "model_0000001.pth").write_text("intermediate checkpoint")
marker.write_text(payload)
"""


class FakeCommands(CommandBuilder):
    def __init__(self, counter, fail=(), slow=()):
        super().__init__()
        self.counter, self.fail, self.slow = str(counter), set(fail), set(slow)

    def _fake(self, marker, job, resume=False, payload="{}"):
        flags = ",".join(f for f, on in (("fail", job in self.fail), ("slow", job in self.slow),
                                         ("resume", resume)) if on) or "-"
        return [sys.executable, "-c", SCRIPT, str(marker), self.counter, job, flags, payload]

    def make_data(self, synthetic, root, seed):
        return self._fake(root / make_data_stamp(synthetic, seed), "data/make")

    def pretrain(self, run, out_dir, data_root, resume):
        return self._fake(out_dir / "model_final.pth", f"pretrain/{run.key}", resume)

    def convert(self, src, dst):
        return self._fake(dst, f"convert/{dst.stem}")

    def cell(self, spec, weights, seed, out_dir, resume):
        row = out_dir.parent.name
        score = 5.0 + 10 * [r.key for r in ROWS].index(row) + seed
        metrics = {m.name: score for m in TASKS[spec.name].metrics}
        payload = json.dumps({"task": spec.name, "metrics": metrics, "iters": 4, "wall_s": 0.5,
                              "weights": str(weights or ""), "config_file": spec.config})
        return self._fake(out_dir / "metrics.json", f"cell/{row}/{spec.name}/seed{seed}", resume, payload)
'''


@pytest.fixture()
def fakes(tmp_path, monkeypatch):
    (tmp_path / "fake_commands.py").write_text(FAKE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import fake_commands

    return fake_commands


def _settings(tmp_path):
    return [
        f"output_dir={tmp_path / 'out'}",
        f"results_dir={tmp_path / 'results'}",
        f"data.root={tmp_path / 'data'}",
    ]


def _calls(counter: Path) -> list[str]:
    return counter.read_text().splitlines() if counter.exists() else []


def test_graph_runs_once_then_nothing_is_rerun(tmp_path, fakes):
    profile = load_profile("smoke", _settings(tmp_path))
    counter = tmp_path / "calls.txt"
    jobs = build_graph(profile, Selection(), fakes.FakeCommands(counter))
    assert len(jobs) == 1 + 5 + 5 + 12  # make-data, 5 pretrains, 5 converts, 6 + 2 + 2 + 2 cells
    state = StateFile(profile.output_dir / "state.json")
    result = Runner(jobs, state, LocalExecutor(), max_parallel=2, echo=lambda _: None, git_rev="abc").run()
    assert result.ok and len(result.ids("done")) == len(jobs)
    calls = _calls(counter)
    assert sorted(c.split()[0] for c in calls) == sorted(
        j.id if j.kind != "cell" else f"cell/{j.cell.row}/{j.cell.task}/seed{j.cell.seed}" for j in jobs
    )
    assert (tmp_path / "data" / make_data_stamp("smoke", 0)).exists()
    saved = json.loads(state.path.read_text())["jobs"]
    assert (
        saved["pretrain/densecl_coco"]["status"] == "done"
        and saved["pretrain/densecl_coco"]["git_rev"] == "abc"
    )
    assert Path(saved["pretrain/densecl_coco"]["log"]).read_text().startswith("running")
    assert not list(profile.output_dir.glob("table*/*/*/seed*/model_*.pth"))  # keep_checkpoints: false

    again = build_graph(profile, Selection(), fakes.FakeCommands(counter))
    result = Runner(again, StateFile(state.path), LocalExecutor(), echo=lambda _: None).run()
    assert result.ok and _calls(counter) == calls  # no job started the second time


def test_failure_is_isolated_recorded_and_dependants_skipped(tmp_path, fakes):
    profile = load_profile("smoke", _settings(tmp_path))
    counter = tmp_path / "calls.txt"
    jobs = build_graph(
        profile, Selection(tables=(1,)), fakes.FakeCommands(counter, fail={"convert/mocov2_coco"})
    )
    state = StateFile(profile.output_dir / "state.json")
    result = Runner(jobs, state, LocalExecutor(), echo=lambda _: None).run()
    assert result.ids("failed") == ["convert/mocov2_coco"]
    assert result.ids("skipped") == ["cell/table1/voc_det/mocov2_coco/seed0"]
    assert len(result.ids("done")) == len(jobs) - 2 and not result.ok
    failed = state.jobs["convert/mocov2_coco"]
    assert failed["returncode"] == 1 and "boom: simulated failure" in failed["error_tail"]
    assert (
        "dependency convert/mocov2_coco" in state.jobs["cell/table1/voc_det/mocov2_coco/seed0"]["error_tail"]
    )
    Runner(jobs, state, LocalExecutor(), echo=lambda _: None).run()  # fails again: only this run's output
    assert state.jobs["convert/mocov2_coco"]["error_tail"].count("boom") == 1


def test_job_exiting_zero_without_marker_fails(tmp_path):
    job = Job("cell/x", "cell", [sys.executable, "-c", "pass"], tmp_path / "metrics.json", tmp_path / "x.log")
    state = StateFile(tmp_path / "state.json")
    result = Runner([job], state, LocalExecutor(), echo=lambda _: None, git_rev="r").run()
    assert result.ids("failed") == ["cell/x"] and "was not written" in state.jobs["cell/x"]["error_tail"]


def test_peak_memory_of_each_job_is_its_own_not_the_runners(tmp_path):
    """The largest process of a job (here a child that holds 300 MB) sets the job's peak_rss_mb, however
    large the runner is: this test process first takes 800 MB itself (a job started straight from it
    would read at least that; benchmarks.peak_rss is why it does not)."""
    ballast = bytearray(800 * 2**20)
    ballast[:: 2**12] = b"x" * len(ballast[:: 2**12])  # touch every page: resident
    child = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"
    big = (f"import subprocess, sys, pathlib; subprocess.run([sys.executable, '-c', {child!r}], check=True); "
           f"pathlib.Path({str(tmp_path / 'big.done')!r}).write_text('ok')")  # fmt: skip
    small = f"open({str(tmp_path / 'small.done')!r}, 'w')"
    jobs = [
        Job("cell/big", "cell", [sys.executable, "-c", big], tmp_path / "big.done", tmp_path / "big.log"),
        Job("cell/small", "cell", [sys.executable, "-c", small], tmp_path / "small.done", tmp_path / "s.log"),
    ]
    lines = []
    state = StateFile(tmp_path / "state.json")
    assert Runner(jobs, state, LocalExecutor(cwd=REPO), echo=lines.append, git_rev="r").run().ok
    del ballast
    assert 300 <= state.jobs["cell/big"]["peak_rss_mb"] < 600
    assert state.jobs["cell/small"]["peak_rss_mb"] < 100
    assert any("done    cell/big" in line and " GB)" in line for line in lines), lines


def test_cli_exit_code_and_report_after_a_failing_cell(tmp_path, fakes, monkeypatch, capsys):
    monkeypatch.setattr(cli, "CommandBuilder", lambda num_gpus: fakes.FakeCommands(
        tmp_path / "calls.txt", fail={"cell/densecl_coco/voc_det/seed0"}))  # fmt: skip
    argv = ["reproduce", "--profile", "smoke", "--tables", "1", "--set", *_settings(tmp_path)]
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    assert "FAILED cell/table1/voc_det/densecl_coco/seed0" in out and "1 job(s) failed" in out
    assert (tmp_path / "results" / "table1.md").exists()
    assert "table1 voc_det: best DenseCL (ImageNet)" in out
    monkeypatch.setattr(cli, "CommandBuilder", lambda num_gpus: fakes.FakeCommands(tmp_path / "calls.txt"))
    assert cli.main(argv) == 0  # fixed: only the failed cell runs again
    assert [c.split()[0] for c in _calls(tmp_path / "calls.txt")].count(
        "cell/densecl_coco/voc_det/seed0"
    ) == 2
    assert len(_calls(tmp_path / "calls.txt")) == 1 + 5 + 5 + 6 + 1


RUN_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from fake_commands import FakeCommands
from benchmarks.executors import LocalExecutor
from benchmarks.jobs import Selection, build_graph
from benchmarks.profile import load_profile
from benchmarks.runner import Runner, StateFile
profile = load_profile("smoke", sys.argv[3:])
jobs = build_graph(profile, Selection(tables=(1,), rows=("random", "densecl_coco")),
                   FakeCommands(sys.argv[2], slow={"pretrain/densecl_coco"}))
try:
    Runner(jobs, StateFile(profile.output_dir / "state.json"), LocalExecutor(), echo=print).run()
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_interrupted_run_resumes_without_redoing_finished_jobs(tmp_path, fakes):
    counter = tmp_path / "calls.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_SCRIPT, str(tmp_path), str(counter), *_settings(tmp_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    partial = tmp_path / "out" / "pretrain" / "densecl_coco" / "checkpoint_last.pth"
    deadline = time.monotonic() + 30
    while not partial.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert partial.exists(), proc.communicate(timeout=60)[0]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    state = StateFile(tmp_path / "out" / "state.json")
    assert state.jobs["pretrain/densecl_coco"]["status"] == "interrupted"
    assert state.jobs["data/make"]["status"] == "done"

    profile = load_profile("smoke", _settings(tmp_path))
    jobs = build_graph(
        profile,
        Selection(tables=(1,), rows=("random", "densecl_coco")),
        fakes.FakeCommands(counter, slow={"pretrain/densecl_coco"}),
    )
    assert "--resume" not in jobs[1].argv and "resume" in jobs[1].argv[-2]  # the fake's resume flag
    assert Runner(jobs, state, LocalExecutor(), echo=lambda _: None).run().ok
    assert not partial.exists()  # removed once pretraining finished (keep_checkpoints: false)
    calls = _calls(counter)
    assert [c for c in calls if c.startswith("data/make")] == ["data/make -"]
    assert [c for c in calls if c.startswith("pretrain/")] == [
        "pretrain/densecl_coco slow",
        "pretrain/densecl_coco slow,resume",
    ]


def test_real_commands_resume_where_a_checkpoint_was_left(tmp_path):
    profile = load_profile("smoke", _settings(tmp_path))
    selection = Selection(tables=(1,), rows=("random", "densecl_coco"))
    fresh = {j.id: j for j in build_graph(profile, selection)}
    assert fresh["pretrain/densecl_coco"].argv[1:3] == ["-m", "pretrain.train_net"]
    assert "--resume" not in fresh["pretrain/densecl_coco"].argv
    assert fresh["cell/table1/voc_det/random/seed0"].env["DETECTRON2_DATASETS"] == str(tmp_path / "data")
    (tmp_path / "out" / "pretrain" / "densecl_coco").mkdir(parents=True)
    (tmp_path / "out" / "pretrain" / "densecl_coco" / "checkpoint_last.pth").write_bytes(b"")
    cell_dir = tmp_path / "out" / "table1" / "voc_det" / "random" / "seed0"
    cell_dir.mkdir(parents=True)
    (cell_dir / "last_checkpoint").write_text("model_0000002.pth")
    resumed = {j.id: j for j in build_graph(profile, selection)}
    assert "--resume" in resumed["pretrain/densecl_coco"].argv
    argv = resumed["cell/table1/voc_det/random/seed0"].argv
    assert "--resume" in argv and argv[argv.index("MODEL.WEIGHTS") + 1] == ""
    weights = resumed["cell/table1/voc_det/densecl_coco/seed0"].argv
    assert weights[weights.index("MODEL.WEIGHTS") + 1] == str(
        tmp_path / "out" / "weights" / "densecl_coco.pkl"
    )
    assert weights[weights.index("SOLVER.STEPS") + 1] == "(3,)"


def test_finished_job_made_by_another_command_is_kept_with_a_warning(tmp_path):
    marker = tmp_path / "metrics.json"
    marker.write_text("{}")
    state = StateFile(tmp_path / "state.json")
    state.update("cell/x", status="done", argv=["python", "old"])
    job = Job("cell/x", "cell", [sys.executable, "-c", "raise SystemExit(1)"], marker, tmp_path / "x.log")
    lines = []
    assert Runner([job], state, LocalExecutor(), echo=lines.append, git_rev="r").run().ok
    assert "cell/x: made by another command" in lines[1] and not job.log.exists()  # warned, not rerun


def test_wandb_logging_reaches_pretraining_and_detectron2_cells_and_changes_no_result(tmp_path):
    profile = load_profile("smoke", _settings(tmp_path))
    jobs = build_graph(profile, Selection(tables=(1, "table_linear"), rows=("random", "densecl_coco")))
    logged = {j.id: j for j in log_to_wandb(jobs, "2024", "smoke")}
    tail = ["WANDB.PROJECT", "'2024'", "WANDB.GROUP", "smoke", "WANDB.NAME"]  # yacs reads '2024' as a str
    for job_id in ("pretrain/densecl_coco", "cell/table1/voc_det/densecl_coco/seed0"):
        assert logged[job_id].argv[-6:] == [*tail, job_id]
    for job_id in ("data/make", "convert/densecl_coco", "cell/table_linear/linear_cls/densecl_coco/seed0"):
        assert not any(a.startswith("WANDB.") for a in logged[job_id].argv), job_id
    for job in jobs:  # a finished job is not "made by another command" because it now logs to W&B
        assert changed_inputs(logged[job.id], {"argv": [*job.argv, "--resume"]}) is None
    assert changed_inputs(jobs[1], {"argv": [*jobs[1].argv, "SEED", "1"]})


def test_slurm_executor_runs_jobs_through_submitit(tmp_path):
    """Without a SLURM cluster, submitit's AutoExecutor runs the same wrapped commands locally."""
    from benchmarks.executors import SlurmExecutor

    ok = Job("a", "cell", [sys.executable, "-c", "print('hello')"], tmp_path / "a.log", tmp_path / "a.log")
    bad = Job(
        "b", "cell", [sys.executable, "-c", "raise SystemExit(4)"], tmp_path / "m", tmp_path / "b.log", ("a",)
    )
    state = StateFile(tmp_path / "state.json")
    executor = SlurmExecutor(tmp_path / "slurm", {"timeout_min": 5}, cwd=tmp_path)
    result = Runner([ok, bad], state, executor, echo=lambda _: None, git_rev="r").run()
    assert result.status == {"a": "done", "b": "failed"}  # job a's log is its own marker
    assert ok.log.read_text() == "hello\n" and state.jobs["b"]["returncode"] == 4


def test_paper_profile_refuses_without_datasets_but_plans(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    settings = ["--num-gpus", "1", "--set", f"output_dir={tmp_path / 'out'}"]
    assert cli.main(["reproduce", "--profile", "paper", *settings]) == 2
    assert "export DETECTRON2_DATASETS" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    for dry_run in (["plan"], ["reproduce", "--dry-run"]):  # the plan first, then the refusal
        assert cli.main([*dry_run, "--profile", "paper", *settings]) == 2
        out, err = capsys.readouterr()
        assert "57 jobs, 0 done, 57 to run" in out and "warning" not in out
        assert err.startswith("error: Profile paper cannot run: The real datasets are missing")
        assert "'$DETECTRON2_DATASETS'" in err and "export DETECTRON2_DATASETS" in err and "check-data" in err
    assert not (tmp_path / "out").exists()


class _RefusingExecutor(LocalExecutor):
    """Refuses to start one job (as submitit does when sbatch fails) and can break while polling."""

    def __init__(self, refuse: str = "", break_polling: bool = False):
        super().__init__()
        self.refuse, self.break_polling, self.cancelled = refuse, break_polling, []

    def start(self, job):
        if job.id == self.refuse:
            raise RuntimeError("sbatch: error: Batch job submission failed")
        return super().start(job)

    def poll(self, handle):
        if self.break_polling:
            raise RuntimeError("squeue timed out")
        return super().poll(handle)

    def cancel(self, handle):
        self.cancelled.append(handle)
        super().cancel(handle)


def _sleeper(tmp_path, name: str) -> Job:
    argv = [
        sys.executable,
        "-c",
        f"import time, pathlib; time.sleep(0.5); pathlib.Path({str(tmp_path / name)!r}).touch()",
    ]
    return Job(f"cell/{name}", "cell", argv, tmp_path / name, tmp_path / f"{name}.log")


def test_a_job_the_executor_refuses_fails_alone(tmp_path):
    jobs = [_sleeper(tmp_path, "a"), _sleeper(tmp_path, "b")]
    state = StateFile(tmp_path / "state.json")
    result = Runner(
        jobs, state, _RefusingExecutor(refuse="cell/a"), max_parallel=2, echo=lambda _: None
    ).run()
    assert result.ids("failed") == ["cell/a"] and result.ids("done") == ["cell/b"]
    assert "Batch job submission failed" in state.jobs["cell/a"]["error_tail"]


def test_an_executor_error_stops_the_running_jobs_instead_of_leaving_them_untracked(tmp_path):
    executor = _RefusingExecutor(break_polling=True)
    state = StateFile(tmp_path / "state.json")
    with pytest.raises(RuntimeError, match="squeue timed out"):
        Runner([_sleeper(tmp_path, "a")], state, executor, echo=lambda _: None).run()
    assert len(executor.cancelled) == 1 and StateFile(state.path).jobs["cell/a"]["status"] == "interrupted"
