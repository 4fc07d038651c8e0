"""The paper's matrix: rows, tables, metric names (interface 4) and alignment with the paper's numbers."""

from pathlib import Path

import pandas as pd

from benchmarks.experiments import ALL_TABLES, ROWS, ROWS_BY_KEY, TABLE_OF_TASK, TABLES, TASKS

REFERENCE = Path(__file__).resolve().parents[2] / "results" / "paper_reference.csv"


def test_six_rows_in_paper_order_with_unique_keys():
    assert [r.key for r in ROWS] == [
        "random", "supervised_imagenet", "mocov2_coco", "densecl_coco", "mocov2_imagenet", "densecl_imagenet",
    ]  # fmt: skip
    assert len(ROWS_BY_KEY) == 6
    assert [r.needs_weights for r in ROWS] == [False, True, True, True, True, True]


def test_tables_hold_the_four_tasks_with_interface_metric_names():
    assert [t.name for t in TABLES] == ["table1", "table2", "table3"]
    assert [[task.name for task in t.tasks] for t in TABLES] == [
        ["voc_det"], ["coco_det_inst"], ["voc_sem_seg", "cityscapes_sem_seg"],
    ]  # fmt: skip
    assert [m.name for m in TASKS["voc_det"].metrics] == ["AP", "AP50", "AP75"]
    assert [m.name for m in TASKS["coco_det_inst"].metrics] == [
        "APb",
        "APb50",
        "APb75",
        "APm",
        "APm50",
        "APm75",
    ]
    assert TASKS["cityscapes_sem_seg"].primary.name == "mIoU"
    assert TABLE_OF_TASK["voc_sem_seg"] is ALL_TABLES["table3"]
    assert TABLE_OF_TASK["linear_cls"].name == "table_linear"
    assert [m.name for m in TASKS["linear_cls"].metrics] == ["top1", "top5", "knn_top1"]


def test_metric_labels_are_unambiguous():
    labels = [m.label for task in TASKS.values() for m in task.metrics]
    assert len(labels) == len(set(labels))
    assert "0.50:0.95" in TASKS["voc_det"].primary.label


def test_every_paper_reference_value_has_a_place_in_the_matrix():
    ref = pd.read_csv(REFERENCE)
    slots = {
        (table.name, m.reference_task, m.name, row.method, row.pretrain_data)
        for table in TABLES
        for task in table.tasks
        for m in task.metrics
        for row in ROWS
    }
    keys = set(zip(ref["table"], ref["task"], ref["metric"], ref["init"], ref["pretrain_data"]))
    assert keys <= slots, keys - slots
    assert set(ref["source"]) <= {"readme", "derived", "recalled"}
    assert len(ref) == 39
