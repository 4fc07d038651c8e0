"""Profiles: the built-in files, `_BASE_` inheritance, `--set` overrides and their error messages."""

import re
from pathlib import Path

import pytest

from benchmarks.experiments import ROWS_BY_KEY
from benchmarks.jobs import Selection, plan_cells
from benchmarks.profile import BenchmarkError, apply_overrides, load_profile


@pytest.mark.parametrize("name", ["paper", "tiny", "smoke"])
def test_builtin_profiles_load_and_use_ssl_configs(name):
    profile = load_profile(name)
    assert set(profile.tasks) == {
        "voc_det",
        "coco_det_inst",
        "voc_sem_seg",
        "cityscapes_sem_seg",
        "linear_cls",
    }
    assert all(
        spec.config.endswith("_ssl.yaml") for name, spec in profile.tasks.items() if name != "linear_cls"
    )
    assert profile.tasks["linear_cls"].config.startswith("pretrain/configs/linear_")
    assert "MODEL.RESNETS.DEPTH" not in profile.tasks["linear_cls"].overrides  # no Detectron2 keys
    assert {"mocov2_coco", "densecl_coco", "mocov2_imagenet", "densecl_imagenet"} <= set(
        profile.pretrain_runs
    )
    assert profile.output_dir == Path("output") / name


def test_paper_profile_is_the_protocol():
    paper = load_profile("paper")
    assert not paper.scaled and paper.synthetic is None
    assert paper.tasks["voc_det"].seeds == (0, 1, 2, 3, 4)
    assert paper.data_root_spec == "$DETECTRON2_DATASETS"
    assert "supervised_imagenet" not in paper.pretrain_runs  # user-supplied torchvision checkpoint
    assert paper.tasks["voc_det"].overrides == {}


def test_tiny_budget_shape():
    tiny = load_profile("tiny")
    assert tiny.scaled and tiny.synthetic == "tiny"
    assert len(tiny.pretrain_runs) == 5
    assert tiny.pretrain_runs["densecl_coco"].overrides["MODEL.ARCH"] == "resnet18"
    assert tiny.pretrain_runs["supervised_imagenet"].config.startswith("pretrain/configs/supervised_")
    assert tiny.tasks["voc_det"].overrides["MODEL.RESNETS.DEPTH"] == 18
    assert tiny.tasks["voc_det"].overrides["TEST.PRECISE_BN.ENABLED"] is False
    assert len(plan_cells(tiny, Selection())) == 24
    # bfloat16 autocast (where the CPU has it natively) for every pretraining run and every task
    assert all(run.overrides["TRAIN.AMP_CPU"] is True for run in tiny.pretrain_runs.values())
    detectron2_tasks = ("voc_det", "coco_det_inst", "voc_sem_seg", "cityscapes_sem_seg")
    assert all(tiny.tasks[task].overrides["TRANSFER.AMP_CPU"] is True for task in detectron2_tasks)


def test_smoke_inherits_tiny_and_shrinks_it():
    smoke = load_profile("smoke")
    assert smoke.name == "smoke" and smoke.data_root_spec == "datasets/synthetic-smoke"
    assert smoke.tasks["voc_det"].overrides["MODEL.RESNETS.DEPTH"] == 18  # from tiny's transfer overrides
    assert smoke.tasks["voc_det"].overrides["SOLVER.MAX_ITER"] == 4
    assert smoke.pretrain_runs["mocov2_coco"].overrides["SOLVER.MAX_ITERS"] == 3
    assert smoke.tasks["coco_det_inst"].rows == ("random", "densecl_imagenet")


def test_set_overrides_profile_and_yacs_keys():
    profile = load_profile(
        "tiny",
        [
            "tasks.voc_det.overrides.SOLVER.MAX_ITER=7",
            "tasks.voc_det.seeds=3",
            "supervised_checkpoint=/x/r50.pth",
            "pretrain.overrides.SOLVER.BATCH_SIZE=16",
            "tasks.voc_det.overrides.SOLVER.STEPS=[5, 6]",
        ],
    )
    spec = profile.tasks["voc_det"]
    assert spec.overrides["SOLVER.MAX_ITER"] == 7 and spec.overrides["SOLVER.STEPS"] == [5, 6]
    assert spec.seeds == (0, 1, 2)
    assert profile.supervised_checkpoint_path == Path("/x/r50.pth")
    assert profile.pretrain_runs["densecl_coco"].overrides["SOLVER.BATCH_SIZE"] == 16


@pytest.mark.parametrize(
    "bad",
    [
        "tasks.voc_dett.seeds=2",
        "nonsense=1",
        "no_equals_sign",
        "data.rooot=x",
        "tasks.voc_det.overide.SOLVER.MAX_ITER=7",  # would be a dead mapping beside `overrides`
        "tasks.voc_det.SOLVER.MAX_ITER=7",  # a yacs key outside `overrides`
        "seed=3",
        "data.root.sub=x",
    ],
)
def test_set_typos_are_refused_with_the_key(bad):
    with pytest.raises(BenchmarkError, match=re.escape(f"--set {bad!r}")):
        apply_overrides(load_profile("tiny").raw, [bad])


def test_set_value_that_is_not_yaml_names_the_item():
    with pytest.raises(BenchmarkError, match=r"--set 'tasks.voc_det.overrides.SOLVER.STEPS=\[100,200'"):
        load_profile("tiny", ["tasks.voc_det.overrides.SOLVER.STEPS=[100,200"])


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("pretrain:\n  runs:\n    densecl_coco:\n", "pretrain.runs.densecl_coco lacks the required key"),
        ("pretrain:\n  runs:\n    densecl_coco: x.yaml\n", "pretrain.runs.densecl_coco: expected a mapping"),
        ("tasks: [voc_det]\n", "tasks: expected a mapping"),
        ("_BASE_: nowhere.yaml\n", "_BASE_ 'nowhere.yaml' is neither a file beside it"),
    ],
)
def test_blank_or_misshapen_sections_are_refused_naming_the_file(tmp_path, text, where):
    path = tmp_path / "mine.yaml"
    path.write_text(text if text.startswith("_BASE_") else "_BASE_: tiny\n" + text)
    with pytest.raises(BenchmarkError, match=f"Profile {path}") as error:
        load_profile(str(path))
    assert where in str(error.value)


def test_blank_transfer_overrides_mean_the_protocol_depth(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("_BASE_: tiny\ntransfer:\n  overrides:\n")
    assert load_profile(str(path)).backbone_depth == 50


def test_set_typo_names_the_key_path_and_the_known_keys():
    with pytest.raises(BenchmarkError) as error:
        load_profile("tiny", ["tasks.voc_det.overide.SOLVER.MAX_ITER=7"])
    message = str(error.value)
    assert "'tasks.voc_det.overide'" in message and "['config', 'overrides', 'rows', 'seeds']" in message
    assert "tasks.voc_det.overrides.SOLVER.MAX_ITER=200" in message  # the fix


@pytest.mark.parametrize(
    ("text", "key", "known"),
    [
        ("seed: 3\n", "'seed'", "'supervised_checkpoint'"),  # the top level
        ("tasks:\n  voc_det:\n    overide: {SOLVER.MAX_ITER: 7}\n", "'tasks.voc_det.overide'", "'overrides'"),
        ("data:\n  sed: 1\n", "'data.sed'", "'seed'"),
        ("pretrain:\n  runs:\n    densecl_coco: {confg: x.yaml, config: y.yaml}\n", "'confg'", "'config'"),
    ],
)
def test_profile_file_typos_are_refused_with_the_key(tmp_path, text, key, known):
    path = tmp_path / "mine.yaml"
    path.write_text("_BASE_: tiny\n" + text)
    with pytest.raises(BenchmarkError, match=f"Profile {path}") as error:
        load_profile(str(path))
    assert key in str(error.value) and known in str(error.value)


def test_set_creates_keys_only_where_the_profile_allows_them():
    paper = load_profile(
        "paper",
        [
            "slurm.slurm_partition=gpu",  # submitit parameters: free-form
            "pretrain.runs.supervised_imagenet.config=pretrain/configs/supervised_R50_8xb32-90ep_in1k.yaml",
            "linear_eval.rows=[random, supervised_imagenet]",
            "linear_eval.overrides.SOLVER.EPOCHS=1",
            "tasks.voc_det.rows=[random]",
            "ablations.ablation_grid.values=[1, 7]",
            "expected_wall_s.probe_s=0.5",
        ],
    )
    assert paper.slurm["slurm_partition"] == "gpu" and "supervised_imagenet" in paper.pretrain_runs
    assert paper.tasks["linear_cls"].rows == ("random", "supervised_imagenet")
    assert paper.tasks["linear_cls"].overrides == {"SOLVER.EPOCHS": 1}
    assert paper.tasks["voc_det"].rows == ("random",) and paper.ablation_values["ablation_grid"] == (1, 7)
    assert paper.expected_wall_s == {"probe_s": 0.5}


def test_user_profile_file_with_base(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("_BASE_: tiny\ntasks:\n  voc_det:\n    seeds: [3, 7]\n")
    profile = load_profile(str(path))
    assert profile.name == "mine" and profile.output_dir == Path("output/mine")
    assert profile.tasks["voc_det"].seeds == (3, 7)
    assert profile.tasks["voc_det"].overrides == load_profile("tiny").tasks["voc_det"].overrides


def test_unknown_profile_names_the_choices():
    with pytest.raises(BenchmarkError, match="paper, smoke, tiny"):
        load_profile("huge")


def test_data_root_expands_environment(monkeypatch):
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    assert load_profile("paper").data_root is None
    monkeypatch.setenv("DETECTRON2_DATASETS", "/data/d2")
    assert load_profile("paper").data_root == Path("/data/d2")


def test_a_table_whose_task_the_profile_lacks_is_refused(tmp_path, capsys):
    import yaml

    import benchmarks.__main__ as cli

    raw = load_profile("tiny").raw
    del raw["tasks"]["coco_det_inst"]
    path = tmp_path / "no_coco.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli.main(["plan", "--profile", str(path), "--tables", "2"]) == 2
    err = capsys.readouterr().err
    assert "--tables table2" in err and "'coco_det_inst'" in err and "add tasks.coco_det_inst" in err
    assert cli.main(["plan", "--profile", str(path), "--tables", "1", "--rows", "random"]) == 0


def test_rows_that_no_selected_table_runs_are_refused():
    smoke = load_profile("smoke")  # tables 2 and 3 fine-tune random and densecl_imagenet only
    with pytest.raises(BenchmarkError, match="--rows mocov2_coco selects no cell") as error:
        plan_cells(smoke, Selection(tables=(3,), rows=("mocov2_coco",)))
    assert "tasks.voc_sem_seg.rows = ['random', 'densecl_imagenet']" in str(error.value)
    with pytest.raises(BenchmarkError, match=r"MODEL\.DENSECL\.LAMBDA variants"):
        plan_cells(smoke, Selection(tables=("ablation_lambda",), rows=("random",)))
    cells = plan_cells(smoke, Selection(tables=(1, 3), rows=("mocov2_coco", "random")))
    assert {(c.task, c.row) for c in cells if c.row == "mocov2_coco"} == {("voc_det", "mocov2_coco")}


def test_bad_seeds_value_is_refused():
    with pytest.raises(BenchmarkError, match="seeds"):
        load_profile("tiny", ["tasks.voc_det.seeds=0"])


def test_profile_config_files_exist():
    root = Path(__file__).resolve().parents[2]
    for name in ("paper", "tiny", "smoke"):
        profile = load_profile(name)
        files = [r.config for r in profile.pretrain_runs.values()] + [
            t.config for t in profile.tasks.values()
        ]
        missing = [f for f in files if not (root / f).is_file()]
        assert not missing, f"{name}: {missing}"


def test_paper_preflight_names_missing_datasets_and_checkpoint(tmp_path, monkeypatch):
    from benchmarks.jobs import PRETRAIN_DATA_DIRS, TASK_DATA_DIRS, preflight

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    problems = preflight(load_profile("paper"), Selection(tables=(1,)))
    assert any(str(tmp_path / "VOC2007" / "Annotations") in p for p in problems)
    assert any("supervised_checkpoint=''" in p for p in problems)
    for folder in {d for dirs in (*TASK_DATA_DIRS.values(), *PRETRAIN_DATA_DIRS.values()) for d in dirs}:
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "r50.pth").write_bytes(b"")
    assert (
        preflight(load_profile("paper", [f"supervised_checkpoint={tmp_path / 'r50.pth'}"]), Selection()) == []
    )


@pytest.mark.parametrize("rows", ["[]", "random"])
def test_task_rows_must_be_a_non_empty_list(rows):
    with pytest.raises(BenchmarkError, match=r"tasks\.voc_det\.rows: expected a non-empty list"):
        load_profile("tiny", [f"tasks.voc_det.rows={rows}"])
    assert load_profile("tiny", ["tasks.voc_det.rows=null"]).tasks["voc_det"].rows == tuple(ROWS_BY_KEY)


def test_paper_profile_with_a_changed_schedule_is_not_compared_to_the_paper():
    trials = ["pretrain.overrides.SEED=3", "tasks.voc_det.seeds=2", "num_gpus=4", "name=mine"]
    assert load_profile("paper", trials).protocol_changes == ()
    assert not load_profile("paper", trials).scaled
    changed = load_profile("paper", ["tasks.voc_det.overrides.SOLVER.MAX_ITER=1000"])
    assert changed.scaled
    assert changed.protocol_changes == ("tasks.voc_det SOLVER.MAX_ITER=1000 (paper: the config's value)",)


def test_paper_copy_with_common_overrides_lists_every_job_they_change(tmp_path):
    path = tmp_path / "short.yaml"
    path.write_text(
        "_BASE_: paper\nname: short\npretrain:\n  overrides: {SOLVER.EPOCHS: 100}\n"
        "  runs:\n    mocov2_coco: {config: pretrain/configs/mocov2_R50_8xb32-200ep_in1k.yaml}\n"
    )
    changes = load_profile(str(path)).protocol_changes
    assert (
        "pretrain.runs.mocov2_coco.config=pretrain/configs/mocov2_R50_8xb32-200ep_in1k.yaml "
        "(paper: pretrain/configs/mocov2_R50_8xb32-800ep_coco.yaml)"
    ) in changes
    epochs = [change for change in changes if "SOLVER.EPOCHS=100" in change]
    assert len(epochs) == 4  # every pretraining run inherits the common override
    assert not any(change.startswith("tasks.") for change in changes)
