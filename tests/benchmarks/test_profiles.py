"""Profiles: the built-in files, `_BASE_` inheritance, `--set` overrides and their error messages."""

from pathlib import Path

import pytest

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


@pytest.mark.parametrize("bad", ["tasks.voc_dett.seeds=2", "nonsense=1", "no_equals_sign", "data.rooot=x"])
def test_set_typos_are_refused_with_the_key(bad):
    with pytest.raises(BenchmarkError, match="--set"):
        apply_overrides(load_profile("tiny").raw, [bad])


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
