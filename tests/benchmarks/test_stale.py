"""Stale finished jobs: a changed command or dataset root, and everything downstream of a stale, missing
or newer dependency, is listed with what to delete; `--redo-stale` deletes and reruns exactly those jobs.
The interpreter running a job is not part of what it computes."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import fake_jobs
from fake_jobs import FakeCommands, calls, settings

import benchmarks.__main__ as cli
from benchmarks.executors import LocalExecutor
from benchmarks.jobs import CommandBuilder, Job, Selection, build_graph
from benchmarks.profile import load_profile
from benchmarks.runner import Runner, StateFile, changed_inputs, result_env, stale_jobs

SELECTION = Selection(tables=(1,), rows=("random", "densecl_coco"))
DENSECL = {
    "pretrain/densecl_coco",
    "convert/densecl_coco",
    "cell/table1/voc_det/densecl_coco/seed0",
}


class ResumingCommands(FakeCommands):
    """Fake cells that, like the real ones, get `--resume` where a checkpoint was left."""

    def cell(self, spec, weights, seed, out_dir, resume):
        return [*super().cell(spec, weights, seed, out_dir, resume), *(["--resume"] if resume else [])]


def _record_finished(jobs: list[Job], state: StateFile) -> None:
    """Writes every job's marker and the state.json record a run would leave, a minute apart in order."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i, job in enumerate(jobs):
        job.marker.parent.mkdir(parents=True, exist_ok=True)
        job.marker.write_text("{}")
        state.update(
            job.id,
            status="done",
            argv=job.argv,
            env=result_env(job),
            started_at=(start + timedelta(minutes=2 * i)).isoformat(),
            finished_at=(start + timedelta(minutes=2 * i + 1)).isoformat(),
        )


def _graph(tmp_path, *extra: str) -> list[Job]:
    return build_graph(load_profile("smoke", [*settings(tmp_path), *extra]), SELECTION, CommandBuilder())


def test_changed_pretraining_makes_its_conversion_and_cells_stale(tmp_path):
    state = StateFile(tmp_path / "out" / "state.json")
    _record_finished(_graph(tmp_path), state)
    assert stale_jobs(_graph(tmp_path), state.jobs) == {}
    jobs = _graph(tmp_path, "pretrain.runs.densecl_coco.overrides.SOLVER.MAX_ITERS=1800")
    stale = stale_jobs(jobs, state.jobs)
    assert set(stale) == DENSECL
    assert stale["pretrain/densecl_coco"] == "made by another command than the profile now gives"
    assert stale["convert/densecl_coco"] == "needs pretrain/densecl_coco, which is stale"


def test_deleted_or_rerun_dependency_makes_its_dependants_stale(tmp_path):
    state = StateFile(tmp_path / "out" / "state.json")
    jobs = _graph(tmp_path)
    _record_finished(jobs, state)
    pretrain = next(job for job in jobs if job.id == "pretrain/densecl_coco")
    pretrain.marker.unlink()  # deleted to redo it: its old conversion and cells must not be kept silently
    stale = stale_jobs(jobs, state.jobs)
    assert set(stale) == DENSECL - {"pretrain/densecl_coco"}
    assert stale["convert/densecl_coco"] == "needs pretrain/densecl_coco, which is not done and runs again"
    pretrain.marker.write_text("{}")  # ... and rerun: it finished after its conversion started
    state.update(pretrain.id, finished_at=datetime(2027, 1, 1, tzinfo=UTC).isoformat())
    stale = stale_jobs(jobs, state.jobs)
    assert set(stale) == DENSECL - {"pretrain/densecl_coco"}
    assert stale["convert/densecl_coco"] == "needs pretrain/densecl_coco, which finished after it started"


def test_changed_dataset_root_is_a_change_but_interpreter_and_threads_are_not(tmp_path):
    job = Job("cell/x", "cell", ["/venv-a/bin/python", "-m", "x"], tmp_path / "m", tmp_path / "x.log",
              env={"DETECTRON2_DATASETS": "/data/a", "PYTHONUNBUFFERED": "1"})  # fmt: skip
    record = {"argv": ["/venv-b/bin/python", "-m", "x"], "env": {"DETECTRON2_DATASETS": "/data/a"}}
    assert changed_inputs(job, record) is None
    threads = Job(job.id, job.kind, job.argv, job.marker, job.log, env={**job.env, "OMP_NUM_THREADS": "4"})
    assert changed_inputs(threads, record) is None
    record["env"] = {"DETECTRON2_DATASETS": "/data/b"}
    assert changed_inputs(job, record) == "made with another DETECTRON2_DATASETS"


def test_interpreter_path_is_ignored_but_the_gpu_count_is_not(tmp_path):
    profile = load_profile("smoke", settings(tmp_path))

    def pretrain(python: str, gpus: int) -> Job:
        jobs = build_graph(profile, SELECTION, CommandBuilder(python=python, num_gpus=gpus))
        return next(job for job in jobs if job.kind == "pretrain")

    recorded = {"argv": pretrain("/tmp/rep3/.venv/bin/python", 2).argv}
    assert changed_inputs(pretrain("/work/main/.venv/bin/python", 2), recorded) is None
    assert changed_inputs(pretrain("/work/main/.venv/bin/python", 4), recorded)  # per-GPU batch changes


def test_redo_stale_deletes_and_reruns_exactly_the_stale_jobs(tmp_path):
    profile = load_profile("smoke", settings(tmp_path))
    counter = tmp_path / "calls.txt"
    jobs = build_graph(profile, SELECTION, FakeCommands(counter))
    state = StateFile(profile.output_dir / "state.json")
    assert Runner(jobs, state, LocalExecutor(), echo=lambda _: None, git_rev="r").run().ok
    first = calls(counter)
    state.update(
        "pretrain/densecl_coco", argv=["python", "-m", "pretrain.train_net", "SOLVER.MAX_ITERS", "9"]
    )
    cell = profile.output_dir / "table1" / "voc_det" / "densecl_coco" / "seed0"
    (cell / "last_checkpoint").write_text("model_0000003.pth")  # an old checkpoint must not be resumed
    jobs = build_graph(profile, SELECTION, ResumingCommands(counter))
    cell_id = "cell/table1/voc_det/densecl_coco/seed0"
    assert "--resume" in next(job for job in jobs if job.id == cell_id).argv

    lines = []
    assert Runner(jobs, StateFile(state.path), LocalExecutor(), echo=lines.append).run().ok
    assert calls(counter) == first  # without --redo-stale: kept, with a warning naming what to delete
    pkl = profile.output_dir / "weights" / "densecl_coco.pkl"
    assert f"  convert/densecl_coco: needs pretrain/densecl_coco, which is stale (delete {pkl})" in lines
    assert any(f"(delete {cell})" in line for line in lines) and any("--redo-stale" in line for line in lines)

    lines = []
    state = StateFile(state.path)
    assert Runner(jobs, state, LocalExecutor(), echo=lines.append, redo_stale=True).run().ok
    redone = calls(counter)[len(first) :]
    assert sorted(redone) == [
        "cell/voc_det/densecl_coco/seed0",
        "convert/densecl_coco",
        "pretrain/densecl_coco",
    ]
    assert not (cell / "last_checkpoint").exists() and "--resume" not in state.jobs[cell_id]["argv"]
    assert stale_jobs(jobs, state.jobs) == {}


def test_plan_lists_stale_jobs_and_reproduce_redo_stale_redoes_them(tmp_path, monkeypatch, capsys):
    counter = tmp_path / "calls.txt"
    monkeypatch.setattr(cli, "CommandBuilder", lambda num_gpus: fake_jobs.FakeCommands(counter))
    argv = [
        "--profile",
        "smoke",
        "--tables",
        "1",
        "--rows",
        "random,densecl_coco",
        "--set",
        *settings(tmp_path),
    ]
    assert cli.main(["reproduce", *argv]) == 0
    state = StateFile(tmp_path / "out" / "state.json")
    state.update(
        "pretrain/densecl_coco", argv=["python", "-m", "pretrain.train_net", "SOLVER.MAX_ITERS", "9"]
    )
    capsys.readouterr()
    assert cli.main(["plan", *argv]) == 0
    out = capsys.readouterr().out
    assert "warning: 3 finished job(s) no longer match" in out
    assert "[done, stale: needs convert/densecl_coco, which is stale] cell/table1/voc_det/densecl_coco" in out
    before = len(calls(counter))
    assert cli.main(["reproduce", *argv, "--redo-stale"]) == 0
    assert len(calls(counter)) == before + 3
    assert "redo pretrain/densecl_coco (made by another command" in capsys.readouterr().out


def _interrupted_cell(tmp_path) -> tuple[Path, StateFile, list[Job], str, Path]:
    """Runs the graph, then turns the finished DenseCL cell into one interrupted with a checkpoint left.
    Returns the call counter, the state, the graph the next run builds (the cell now carries `--resume`),
    the cell's id and its directory."""
    profile = load_profile("smoke", settings(tmp_path))
    counter = tmp_path / "calls.txt"
    state = StateFile(profile.output_dir / "state.json")
    assert Runner(build_graph(profile, SELECTION, FakeCommands(counter)), state, LocalExecutor()).run().ok
    cell = profile.output_dir / "table1" / "voc_det" / "densecl_coco" / "seed0"
    (cell / "metrics.json").unlink()
    (cell / "last_checkpoint").write_text("model_0000003.pth")
    cell_id = "cell/table1/voc_det/densecl_coco/seed0"
    state.update(cell_id, status="interrupted")
    jobs = build_graph(profile, SELECTION, ResumingCommands(counter))
    assert "--resume" in next(job for job in jobs if job.id == cell_id).argv
    return counter, state, jobs, cell_id, cell


def test_interrupted_job_with_a_changed_command_is_not_resumed_until_redone(tmp_path):
    counter, state, jobs, cell_id, cell = _interrupted_cell(tmp_path)
    state.update(cell_id, argv=["python", "-m", "transfer.train_net", "SOLVER.BASE_LR", "0.5"])
    assert stale_jobs(jobs, state.jobs) == {cell_id: "made by another command than the profile now gives"}
    before = calls(counter)

    lines = []
    result = Runner(jobs, StateFile(state.path), LocalExecutor(), echo=lines.append).run()
    assert result.ids("failed") == [cell_id] and calls(counter) == before
    assert any(line.startswith("error: 1 interrupted job(s) left a checkpoint") for line in lines)
    record = StateFile(state.path).jobs[cell_id]
    assert record["status"] == "failed" and "not resumed: its checkpoint is stale" in record["error_tail"]
    assert (cell / "last_checkpoint").exists()  # kept: only --redo-stale or the user deletes it

    state = StateFile(state.path)
    assert Runner(jobs, state, LocalExecutor(), echo=lambda _: None, redo_stale=True).run().ok
    assert calls(counter)[len(before) :] == ["cell/voc_det/densecl_coco/seed0"]
    assert not (cell / "last_checkpoint").exists() and "--resume" not in state.jobs[cell_id]["argv"]


def test_interrupted_job_is_restarted_when_redo_stale_redoes_its_dependency(tmp_path):
    _, state, jobs, cell_id, cell = _interrupted_cell(tmp_path)
    pretrain_argv = ["python", "-m", "pretrain.train_net", "SOLVER.MAX_ITERS", "9"]
    state.update("pretrain/densecl_coco", argv=pretrain_argv)
    assert stale_jobs(jobs, state.jobs)[cell_id] == "needs convert/densecl_coco, which is stale"

    state = StateFile(state.path)
    assert Runner(jobs, state, LocalExecutor(), echo=lambda _: None, redo_stale=True).run().ok
    assert not (cell / "last_checkpoint").exists() and "--resume" not in state.jobs[cell_id]["argv"]


def test_plan_plans_like_the_recorded_run_so_a_login_node_sees_no_stale_jobs(tmp_path, monkeypatch, capsys):
    """A SLURM run's commands have torchrun / --num-gpus; `plan` on a GPU-less node must build the same."""
    built = []

    def commands(num_gpus):
        built.append(num_gpus)
        return FakeCommands(tmp_path / "calls.txt")

    monkeypatch.setattr(cli, "CommandBuilder", commands)
    argv = ["--profile", "smoke", "--tables", "1", "--rows", "random", "--set", *settings(tmp_path)]
    assert cli.main(["reproduce", *argv]) == 0
    state = StateFile(tmp_path / "out" / "state.json")
    assert state.launch == {"executor": "local", "num_gpus": 1}
    state.data["launch"] = {"executor": "slurm", "num_gpus": 8}  # as `reproduce --executor slurm` leaves it
    state.update("data/make", status="done")
    assert cli.main(["plan", *argv]) == 0 and built[-1] == 8  # SLURM: the GPUs are the compute nodes'
    assert cli.main(["plan", *argv, "--executor", "local"]) == 0 and built[-1] == 1  # no CUDA here
