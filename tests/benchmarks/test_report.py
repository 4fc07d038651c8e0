"""Collect + report: long CSV from metrics.json files, wide paper tables (mean +- std, paper value, delta)."""

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.atomic import atomic_write, atomic_write_text
from benchmarks.collect import LONG_COLUMNS, collect, read_reference
from benchmarks.experiments import ALL_TABLES, ROWS
from benchmarks.report import ReportContext, build_report, markdown, summarise, wide_table

REFERENCE = read_reference(Path(__file__).resolve().parents[2] / "results" / "paper_reference.csv")
AP = "AP (VOC, COCO-style 0.50:0.95, 11-point)"


def _long(records):
    base = {c: "" for c in LONG_COLUMNS} | {"profile": "paper"}
    rows = [base | {"row": "random" if r["init"] == "random" else f"{r['init']}_{r['pretrain_data']}"} | r
            for r in records]  # fmt: skip
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def _voc(init, data, seed, ap):
    return {"table": "table1", "task": "voc_det", "init": init, "pretrain_data": data, "seed": seed,
            "metric": "AP", "value": ap}  # fmt: skip


LONG = _long(
    [_voc("random", "none", s, v) for s, v in enumerate([10.0, 12.0, 14.0])]
    + [_voc("densecl", "imagenet", s, v) for s, v in enumerate([60.0, 61.0])]
    + [_voc("mocov2", "coco", 0, 9.0)]
    + [{"table": "table2", "task": "coco_det_inst", "init": "densecl", "pretrain_data": "coco", "seed": 0,
        "metric": m, "value": 40.0} for m in ("APb", "APb50", "APm")]
    + [{"table": "table3", "task": "cityscapes_sem_seg", "init": "mocov2", "pretrain_data": "coco", "seed": 0,
        "metric": "mIoU", "value": 50.0}]
)  # fmt: skip


def test_wide_table_mean_std_paper_and_delta_aligned():
    wide = wide_table(LONG, REFERENCE, ALL_TABLES["table1"], scaled=False).set_index("row")
    assert wide.loc["random", f"{AP} | mean"] == pytest.approx(12.0)
    assert wide.loc["random", f"{AP} | std"] == pytest.approx(2.0)  # sample std of 10, 12, 14
    assert wide.loc["random", f"{AP} | n"] == 3
    assert (
        wide.loc["random", f"{AP} | paper"] == 32.8
        and wide.loc["random", f"{AP} | paper source"] == "recalled"
    )
    assert wide.loc["random", f"{AP} | delta vs paper"] == pytest.approx(12.0 - 32.8)
    assert wide.loc["densecl_imagenet", f"{AP} | std"] == pytest.approx(math.sqrt(0.5))
    assert wide.loc["densecl_imagenet", f"{AP} | paper"] == 58.7
    assert math.isnan(wide.loc["mocov2_coco", f"{AP} | std"])  # one seed: no spread
    assert math.isnan(wide.loc["supervised_imagenet", f"{AP} | mean"])  # not run; paper value still shown
    assert wide.loc["supervised_imagenet", f"{AP} | paper"] == 54.2
    assert list(wide.index) == [r.key for r in ROWS]


def test_coco_box_and_mask_columns_take_their_own_paper_rows():
    wide = wide_table(LONG, REFERENCE, ALL_TABLES["table2"], scaled=False).set_index("row")
    assert wide.loc["densecl_coco", "APb (COCO box, 0.50:0.95) | paper"] == 39.6
    assert wide.loc["densecl_coco", "APm (COCO mask, 0.50:0.95) | paper"] == 35.7
    assert wide.loc["mocov2_coco", "APm (COCO mask, 0.50:0.95) | paper source"] == "derived"
    assert wide["APb50 (COCO box, IoU 0.50) | paper"].isna().all()


def test_cityscapes_paper_blank_where_the_paper_has_no_row():
    wide = wide_table(LONG, REFERENCE, ALL_TABLES["table3"], scaled=False).set_index("row")
    city = "mIoU (Cityscapes val, 19 classes)"
    assert wide.loc["mocov2_coco", f"{city} | mean"] == 50.0
    assert math.isnan(wide.loc["mocov2_coco", f"{city} | paper"])
    assert wide.loc["densecl_imagenet", f"{city} | paper"] == 75.7


def test_scaled_profile_has_no_deltas_and_says_so():
    table = ALL_TABLES["table1"]
    wide = wide_table(LONG, REFERENCE, table, scaled=True)
    assert wide[f"{AP} | delta vs paper"].isna().all()
    text = markdown(table, wide, ReportContext("tiny", True, "Scaled for CPU."))
    assert "not comparable" in text and "Δ vs paper" not in text
    assert "| Random init | 12.0 ± 2.0 | 32.8 (recalled) |" in text
    paper_text = markdown(
        table, wide_table(LONG, REFERENCE, table, scaled=False), ReportContext("paper", False)
    )
    assert "| Random init | 12.0 ± 2.0 | 32.8 (recalled) | -20.8 |" in paper_text
    assert "not comparable" not in paper_text


def test_summary_names_best_row_and_tests_nothing_below_three_seeds():
    lines = summarise(ALL_TABLES["table1"], wide_table(LONG, REFERENCE, ALL_TABLES["table1"], scaled=True))
    assert lines == [
        "table1 voc_det: best DenseCL (ImageNet) (AP 60.5); vs random init (12.0): "
        "not tested (needs >= 3 seeds per row)"
    ]
    single = LONG[LONG["seed"] == 0]
    lines = summarise(ALL_TABLES["table1"], wide_table(single, REFERENCE, ALL_TABLES["table1"], scaled=True))
    assert lines[0].endswith("vs random init (10.0): single seed: not tested") and "beats" not in lines[0]


def test_build_report_writes_every_file(tmp_path):
    summary = build_report(LONG, REFERENCE, tmp_path, ReportContext("paper", False))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["results.csv", "summary.md"] + [
        f"table{n}.{e}" for n in (1, 2, 3) for e in ("csv", "md", "png")
    ]
    assert (tmp_path / "table1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pd.read_csv(tmp_path / "results.csv").shape == LONG.shape
    assert any("random init not run" in line for line in summary)


def test_report_removes_what_no_longer_has_results(tmp_path):
    build_report(LONG, REFERENCE, tmp_path, ReportContext("paper", False))
    build_report(LONG[LONG["table"] != "table2"], REFERENCE, tmp_path, ReportContext("paper", False))
    assert not any(tmp_path.glob("table2.*")) and (tmp_path / "table1.md").exists()
    build_report(LONG.iloc[:0], REFERENCE, tmp_path, ReportContext("paper", False))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_collect_reads_cells_and_job_info(tmp_path):
    run = tmp_path / "table3" / "voc_sem_seg" / "densecl_coco" / "seed2"
    run.mkdir(parents=True)
    metrics = {"mIoU": 41.5, "mAcc": 50.0, "pAcc": 80.0}
    (run / "metrics.json").write_text(json.dumps({
        "task": "voc_sem_seg", "metrics": metrics, "iters": 100, "wall_s": 12.5, "ims_per_batch": 4,
        "base_lr": 0.0025, "weights": "w.pkl", "config_file": "c.yaml"}))  # fmt: skip
    (tmp_path / "table3" / "voc_sem_seg" / "unknown_row" / "seed0").mkdir(parents=True)
    jobs = {
        "cell/table3/voc_sem_seg/densecl_coco/seed2": {
            "git_rev": "abc123",
            "finished_at": "2026-01-01T00:00:00",
        }
    }
    long = collect("tiny", tmp_path, jobs).set_index("metric")
    assert list(long.index) == ["mIoU", "mAcc", "pAcc"]
    row = long.loc["mIoU"]
    assert (row["init"], row["pretrain_data"], row["seed"], row["value"]) == ("densecl", "coco", 2, 41.5)
    assert (row["dataset"], row["git_rev"], row["iters"], row["checkpoint"]) == (
        "voc12aug",
        "abc123",
        100,
        "w.pkl",
    )
    assert row["config"] == "c.yaml" and row["finished_at"] == "2026-01-01T00:00:00"
    assert (row["ims_per_batch"], row["base_lr"]) == (4, 0.0025)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "table1.md"
    atomic_write_text(target, "old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table1.md"]  # no temporary file left behind


def test_atomic_write_gives_the_permissions_of_a_plain_write(tmp_path):
    """Not mkstemp's owner-only 0600: colleagues on a shared cluster read the results."""
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "results.csv", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "results.csv").stat().st_mode & 0o777 == 0o644


def test_paper_profile_off_protocol_has_no_deltas_and_names_the_change():
    table = ALL_TABLES["table1"]
    change = "tasks.voc_det SOLVER.MAX_ITER=1000 (paper: the config's value)"
    context = ReportContext("paper", True, "The paper's protocol.", (change,))
    text = markdown(table, wide_table(LONG, REFERENCE, table, scaled=True), context)
    assert f"departs from the paper's protocol** in: `{change}`" in text
    assert "Δ vs paper" not in text and "Scaled profile" not in text
