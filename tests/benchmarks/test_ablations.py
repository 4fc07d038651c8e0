"""Ablation tables and linear classification: rows per profile, the job graph (the main DenseCL (COCO) run is
reused, no job twice), the real commands, and a whole smoke run with fake commands up to the report."""

from collections import Counter

import pandas as pd
import pytest
from fake_jobs import FakeCommands, calls, fake_score, settings

import benchmarks.__main__ as cli
from benchmarks.experiments import ABLATIONS_BY_NAME, table_names
from benchmarks.jobs import Selection, build_graph
from benchmarks.matrix import Matrix
from benchmarks.profile import BenchmarkError, load_profile
from benchmarks.stats import paired_p


def test_tables_are_selected_by_number_name_or_group():
    assert table_names((1, "3", "table_linear")) == ("table1", "table3", "table_linear")
    assert table_names(("ablations", "ablation_grid")) == (
        "ablation_lambda",
        "ablation_grid",
        "ablation_matching",
    )
    with pytest.raises(BenchmarkError, match=r"unknown table 'ablation_lamda'.*ablation_lambda"):
        _ = Selection(tables=("ablation_lamda",)).table_names


def test_ablation_rows_reuse_the_main_run_and_follow_the_profile():
    tiny, paper = Matrix(load_profile("tiny")), Matrix(load_profile("paper"))
    assert [r.key for r in tiny.view("ablation_grid").rows] == [
        "densecl_coco_grid1",
        "densecl_coco",
        "densecl_coco_grid3",
    ]
    assert [r.key for r in paper.view("ablation_grid").rows] == [
        "densecl_coco_grid1", "densecl_coco_grid3", "densecl_coco_grid5", "densecl_coco",
    ]  # fmt: skip
    assert "S ∈ {1, 2, 3} with 64 px" in tiny.view("ablation_grid").note
    lam = paper.view("ablation_lambda").rows
    assert [r.key for r in lam] == [
        "densecl_coco_lambda0", "densecl_coco_lambda0.3", "densecl_coco", "densecl_coco_lambda0.7",
        "densecl_coco_lambda1",
    ]  # fmt: skip
    assert lam[2].label == "λ = 0.5 (main DenseCL (COCO) run)"
    assert [r.key for r in paper.view("ablation_matching").rows] == ["densecl_coco", "densecl_coco_geometry"]
    base = tiny.profile.pretrain_runs["densecl_coco"]
    variant = tiny.pretrain_run(tiny.rows["densecl_coco_lambda0.3"])
    assert variant.config == base.config
    assert variant.overrides == {**base.overrides, "MODEL.DENSECL.LAMBDA": 0.3}
    assert tiny.pretrain_run(tiny.rows["densecl_coco"]) is base


@pytest.mark.parametrize("name", sorted(ABLATIONS_BY_NAME))
def test_ablation_graph_shares_the_main_run_and_never_duplicates_a_job(name, tmp_path):
    profile = load_profile("smoke", settings(tmp_path))
    matrix = Matrix(profile)
    fake = FakeCommands(tmp_path / "calls.txt")
    jobs = build_graph(profile, Selection(tables=(name,)), fake)
    ids = [j.id for j in jobs]
    assert len(ids) == len(set(ids))
    variants = [r.key for r in matrix.view(name).rows if r.key != "densecl_coco"]
    assert {i for i in ids if i.startswith("pretrain/")} == {"pretrain/densecl_coco"} | {
        f"pretrain/{v}" for v in variants
    }
    assert "cell/table1/voc_det/densecl_coco/seed0" in ids  # the very cell Table 1 runs
    with_table1 = [j.id for j in build_graph(profile, Selection(tables=(1, name)), fake)]
    assert len(with_table1) == len(set(with_table1))
    table1 = [j.id for j in build_graph(profile, Selection(tables=(1,)), fake)]
    assert set(with_table1) == set(table1) | set(ids)
    if name == "ablation_lambda":
        assert {i for i in ids if i.startswith("cell/table_linear/")} == {
            f"cell/table_linear/linear_cls/{r}/seed0" for r in ["densecl_coco", *variants]
        }


def test_real_commands_of_variant_pretraining_and_linear_cells(tmp_path):
    profile = load_profile("smoke", settings(tmp_path))
    jobs = {j.id: j for j in build_graph(profile, Selection(tables=("ablations",)))}
    lam = jobs["pretrain/densecl_coco_lambda0"].argv
    assert lam[lam.index("MODEL.DENSECL.LAMBDA") + 1] == "0.0" and lam[lam.index("--config-file") + 1] == (
        profile.pretrain_runs["densecl_coco"].config
    )
    assert "MODEL.DENSECL.LAMBDA" not in jobs["pretrain/densecl_coco"].argv
    geometry = jobs["pretrain/densecl_coco_geometry"].argv
    assert geometry[geometry.index("MODEL.DENSECL.MATCHING") + 1] == "geometry"
    linear = jobs["cell/table_linear/linear_cls/densecl_coco_lambda1/seed0"].argv
    assert linear[1:3] == ["-m", "pretrain.linear_eval"]
    assert linear[linear.index("--config-file") + 1] == "pretrain/configs/linear_R18_tiny.yaml"
    assert linear[linear.index("MODEL.WEIGHTS") + 1] == str(
        tmp_path / "out" / "weights" / "densecl_coco_lambda1.pkl"
    )
    assert linear[linear.index("DATA.ROOT") + 1] == str(tmp_path / "data")
    assert linear[linear.index("OUTPUT_DIR") + 1] == str(
        tmp_path / "out" / "table_linear" / "linear_cls" / "densecl_coco_lambda1" / "seed0"
    )
    assert linear[linear.index("SOLVER.EPOCHS") + 1] == "1" and "MODEL.RESNETS.DEPTH" not in linear


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("ablations.ablation_lambda.values=[0.5, 1.5]", "1.5 is not a valid MODEL.DENSECL.LAMBDA"),
        (
            "ablations.ablation_matching.values=[feature, argmax]",
            "'argmax' is not a valid MODEL.DENSECL.MATCHING",
        ),
        ("ablations.ablation_grid.values=[1, 1]", "repeats a value"),
    ],
)
def test_bad_ablation_values_are_refused_with_the_key(assignment, message):
    with pytest.raises(BenchmarkError, match=message):
        load_profile("tiny", [assignment])


def test_linear_cls_belongs_under_linear_eval(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("_BASE_: tiny\ntasks:\n  linear_cls: {config: x.yaml}\n")
    with pytest.raises(BenchmarkError, match="configured under the top-level key linear_eval"):
        load_profile(str(path))
    path.write_text("_BASE_: tiny\nablations:\n  ablation_temperature: {values: [0.1]}\n")
    with pytest.raises(BenchmarkError, match="unknown \\['ablation_temperature'\\]"):
        load_profile(str(path))


def test_whole_ablation_graph_runs_and_reports(tmp_path, monkeypatch, capsys):
    counter = tmp_path / "calls.txt"
    monkeypatch.setattr(cli, "CommandBuilder", lambda num_gpus: FakeCommands(counter))
    argv = ["reproduce", "--profile", "smoke", "--tables", "1,ablations,table_linear", "--seeds", "3",
            "--jobs", "4", "--set", *settings(tmp_path)]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    made = Counter(calls(counter))
    assert max(made.values()) == 1  # no job ran twice
    assert made["pretrain/densecl_coco"] == 1
    assert (
        sum(c.startswith("pretrain/") for c in made) == 5 + 2 + 2 + 1
    )  # paper rows + lambda, grid, matching
    results = tmp_path / "results"
    for name in ("table1", "table_linear", *ABLATIONS_BY_NAME):
        for ext in ("csv", "md", "png"):
            assert (results / f"{name}.{ext}").stat().st_size > 0, name
    lam = (results / "ablation_lambda.md").read_text()
    assert "0.7 > 0.5" in lam and "0.3 > 0.5" in lam and "trade-off" in lam
    assert "| λ = 0.5 (main DenseCL (COCO) run) |" in lam and "top-1 (linear, val)" in lam
    assert "paper" not in lam.split("| Initialisation |")[1].split("\n")[0]  # no reference values exist
    assert "S ∈ {1, 2, 3} with 64 px" in (results / "ablation_grid.md").read_text()
    assert "almost the same" in (results / "ablation_matching.md").read_text()
    wide = pd.read_csv(results / "ablation_lambda.csv").set_index("row")
    ap = "AP (VOC, COCO-style 0.50:0.95, 11-point)"
    for row in ("densecl_coco_lambda0", "densecl_coco_lambda1"):
        ours = {s: fake_score(row, s) for s in range(3)}
        main = {s: fake_score("densecl_coco", s) for s in range(3)}
        assert wide.loc[row, f"{ap} | p vs reference"] == pytest.approx(paired_p(ours, main), abs=1e-4)
        marked = "†" in next(
            line for line in lam.splitlines() if line.startswith(f"| {wide.loc[row, 'label']} |")
        )
        assert marked == (paired_p(ours, main) < 0.05)
    assert "table1 voc_det: best" in out and "beats random init: " in out
