"""The experiment matrix of the DenseCL paper (Wang et al., CVPR 2021, Sec. 4.2) as typed data.

Rows are initialisations (a pretraining method and the data it saw), tables group downstream tasks:
Table 1 is VOC07+12 detection, Table 2 COCO detection and instance segmentation, Table 3 semantic
segmentation on VOC12 (train_aug) and Cityscapes. Every other module (runner, collect, report) reads
the matrix from here; profiles only choose sizes, seeds and which rows/tasks run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One initialisation: `method` pretrained on `pretrain_data` ("none" for random init)."""

    method: str  # "random" | "supervised" | "mocov2" | "densecl"
    pretrain_data: str  # "none" | "imagenet" | "coco"
    label: str  # human label used in the tables, e.g. "DenseCL (COCO)"

    @property
    def key(self) -> str:
        """Stable identifier used on the CLI (`--rows`), in paths and in CSVs, e.g. `densecl_coco`."""
        return "random" if self.method == "random" else f"{self.method}_{self.pretrain_data}"

    @property
    def needs_weights(self) -> bool:
        """False only for random initialisation (MODEL.WEIGHTS stays empty)."""
        return self.method != "random"


@dataclass(frozen=True)
class Metric:
    """A metric reported by `transfer.train_net` in metrics.json, with an unambiguous label."""

    name: str  # key in metrics.json, e.g. "AP", "APb", "mIoU"
    label: str  # column label in CSV/Markdown
    reference_task: str  # task name used for this metric in results/paper_reference.csv


@dataclass(frozen=True)
class Task:
    """A downstream protocol (PROTOCOLS.md): dataset, model and the metrics it reports."""

    name: str  # value of "task" in metrics.json
    dataset: str  # dataset column of the results (matches paper_reference.csv)
    title: str
    metrics: tuple[Metric, ...]

    @property
    def primary(self) -> Metric:
        """The headline metric (first one): AP for VOC, APb for COCO, mIoU for segmentation."""
        return self.metrics[0]


@dataclass(frozen=True)
class Table:
    """One table of the paper: which tasks it shows (as column groups) for every row."""

    name: str  # "table1" | "table2" | "table3"
    number: int
    title: str
    tasks: tuple[Task, ...]


ROWS: tuple[Row, ...] = (
    Row("random", "none", "Random init"),
    Row("supervised", "imagenet", "Supervised (ImageNet)"),
    Row("mocov2", "coco", "MoCo-v2 (COCO)"),
    Row("densecl", "coco", "DenseCL (COCO)"),
    Row("mocov2", "imagenet", "MoCo-v2 (ImageNet)"),
    Row("densecl", "imagenet", "DenseCL (ImageNet)"),
)

_VOC_DET = Task(
    name="voc_det",
    dataset="voc07+12",
    title="VOC07+12 detection, Faster R-CNN R50-C4 (test on VOC07 test)",
    metrics=(
        Metric("AP", "AP (VOC, COCO-style 0.50:0.95, 11-point)", "voc_det"),
        Metric("AP50", "AP50 (VOC, IoU 0.50, classic VOC metric)", "voc_det"),
        Metric("AP75", "AP75 (VOC, IoU 0.75)", "voc_det"),
    ),
)
_COCO = Task(
    name="coco_det_inst",
    dataset="coco2017",
    title="COCO detection + instance segmentation, Mask R-CNN R50-FPN 1x (test on val2017)",
    metrics=(
        Metric("APb", "APb (COCO box, 0.50:0.95)", "coco_det"),
        Metric("APb50", "APb50 (COCO box, IoU 0.50)", "coco_det"),
        Metric("APb75", "APb75 (COCO box, IoU 0.75)", "coco_det"),
        Metric("APm", "APm (COCO mask, 0.50:0.95)", "coco_inst"),
        Metric("APm50", "APm50 (COCO mask, IoU 0.50)", "coco_inst"),
        Metric("APm75", "APm75 (COCO mask, IoU 0.75)", "coco_inst"),
    ),
)
_VOC_SEG = Task(
    name="voc_sem_seg",
    dataset="voc12aug",
    title="VOC12 semantic segmentation, FCN r50-d8 (train_aug -> val)",
    metrics=(Metric("mIoU", "mIoU (VOC12 val, 21 classes)", "voc_sem_seg"),),
)
_CITY_SEG = Task(
    name="cityscapes_sem_seg",
    dataset="cityscapes",
    title="Cityscapes semantic segmentation, FCN r50-d8 (gtFine train -> val)",
    metrics=(Metric("mIoU", "mIoU (Cityscapes val, 19 classes)", "cityscapes_sem_seg"),),
)

TABLES: tuple[Table, ...] = (
    Table("table1", 1, "Table 1: object detection on PASCAL VOC", (_VOC_DET,)),
    Table("table2", 2, "Table 2: object detection and instance segmentation on COCO", (_COCO,)),
    Table("table3", 3, "Table 3: semantic segmentation on PASCAL VOC and Cityscapes", (_VOC_SEG, _CITY_SEG)),
)

TASKS: dict[str, Task] = {task.name: task for table in TABLES for task in table.tasks}
ROWS_BY_KEY: dict[str, Row] = {row.key: row for row in ROWS}
TABLE_OF_TASK: dict[str, Table] = {task.name: table for table in TABLES for task in table.tasks}


def table_by_number(number: int) -> Table:
    """The table with this paper number (1, 2 or 3)."""
    for table in TABLES:
        if table.number == number:
            return table
    raise KeyError(number)
