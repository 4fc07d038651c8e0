"""The experiment matrix of the DenseCL paper (Wang et al., CVPR 2021, Sec. 4) as typed data.

Rows are initialisations (a pretraining method and the data it saw), tables group downstream tasks:
Table 1 is VOC07+12 detection, Table 2 COCO detection and instance segmentation, Table 3 semantic
segmentation on VOC12 (train_aug) and Cityscapes. `table_linear` adds linear classification on ImageNet
(frozen backbone) for every row, and the ablation tables (paper Sec. 4.3: loss weight lambda, grid size S,
how positives are matched) show pretraining variants of the DenseCL (COCO) run. Every other module (matrix,
runner, collect, report) reads the matrix from here; profiles only choose sizes, seeds, which rows/tasks
run and the ablation values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    """One initialisation: `method` pretrained on `pretrain_data` ("none" for random init).

    Ablation rows are variants of a paper row: the same pretraining run with `pretrain_overrides` on top
    (key `densecl_coco_lambda0.3`). Custom rows (`python -m benchmarks evaluate`) bring their own
    checkpoint; their key is the user's NAME and `depth` the ResNet depth read from the checkpoint.
    """

    method: str  # "random" | "supervised" | "mocov2" | "densecl" | "custom"
    pretrain_data: str  # "none" | "imagenet" | "coco" | "unknown" (custom)
    label: str  # human label used in the tables, e.g. "DenseCL (COCO)"
    variant: str = ""  # ablation variant, e.g. "lambda0.3"; a custom row's NAME; "" for the paper's rows
    pretrain_overrides: tuple[tuple[str, Any], ...] = ()  # ablation: pretraining KEY VALUE on the base run
    checkpoint: str = ""  # custom rows: the user's checkpoint file
    depth: int | None = None  # custom rows: ResNet depth of the checkpoint; None = the profile's

    @property
    def base_key(self) -> str:
        """Key of the paper row this row varies (itself for paper rows)."""
        return "random" if self.method == "random" else f"{self.method}_{self.pretrain_data}"

    @property
    def key(self) -> str:
        """Stable identifier used on the CLI (`--rows`), in paths and in CSVs, e.g. `densecl_coco`."""
        if self.method == "custom":
            return self.variant
        return f"{self.base_key}_{self.variant}" if self.variant else self.base_key

    @property
    def needs_weights(self) -> bool:
        """False only for random initialisation (MODEL.WEIGHTS stays empty)."""
        return self.method != "random"

    @property
    def is_paper_row(self) -> bool:
        """One of the paper's six initialisations (has paper reference values)."""
        return not self.variant


@dataclass(frozen=True)
class Metric:
    """A metric reported by `transfer.train_net` in metrics.json, with an unambiguous label."""

    name: str  # key in metrics.json, e.g. "AP", "APb", "mIoU"
    label: str  # column label in CSV/Markdown
    reference_task: str  # task name used for this metric in results/paper_reference.csv


@dataclass(frozen=True)
class Task:
    """A downstream protocol (transfer/configs/, transfer/README.md "Fine-tune"): dataset, model and the
    metrics it reports."""

    name: str  # value of "task" in metrics.json
    dataset: str  # dataset column of the results (matches paper_reference.csv)
    title: str
    metrics: tuple[Metric, ...]
    entry: str = "transfer"  # cell CLI: "transfer" = transfer.train_net, "linear" = pretrain.linear_eval

    @property
    def primary(self) -> Metric:
        """The headline metric (first one): AP for VOC, APb for COCO, mIoU for segmentation."""
        return self.metrics[0]


@dataclass(frozen=True)
class Table:
    """One table: which tasks it shows (as column groups) for every row.

    `reference_row` is the row every other row is tested against (t-test over seeds, stats.py): random init
    for the paper's tables, the main DenseCL (COCO) run for the ablations.
    """

    name: str  # "table1" | "table2" | "table3" | "table_linear" | "ablation_<parameter>"
    title: str
    tasks: tuple[Task, ...]
    reference_row: str = "random"


@dataclass(frozen=True)
class Ablation:
    """A DenseCL ablation (paper Sec. 4.3): one pretraining key varied on top of the `base_row` run.

    The row whose value equals the base run's own value IS the base run (reused, never pretrained twice);
    the other values become rows `<base_row>_<key_part><value>` (numbers) or `<base_row>_<value>` (words).
    """

    table: Table
    parameter: str  # pretraining yacs key, e.g. "MODEL.DENSECL.LAMBDA"
    symbol: str  # how the Markdown names the parameter, e.g. "λ"
    key_part: str  # row-key part for numeric values, e.g. "lambda" -> densecl_coco_lambda0.3
    paper_values: tuple[Any, ...]  # the values of the paper's ablation (paper profile default)
    finding: str  # the paper's qualitative result, quoted in the Markdown (no reference values exist)
    base_row: str = "densecl_coco"
    choices: tuple[str, ...] = ()  # allowed values of a word-valued parameter
    bounds: tuple[float, float] | None = None  # allowed range of a numeric parameter (inclusive)

    def variant(self, value: Any) -> str:
        """Row-key suffix of one value: `lambda0.3`, `grid5`, `geometry`."""
        return str(value) if isinstance(value, str) else f"{self.key_part}{value:g}"


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

_LINEAR = Task(
    name="linear_cls",
    dataset="imagenet",
    title="ImageNet linear classification, frozen backbone + one FC layer (MoCo protocol; val split)",
    metrics=(
        Metric("top1", "top-1 (linear, val)", "linear_cls"),
        Metric("top5", "top-5 (linear, val)", "linear_cls"),
        Metric("knn_top1", "top-1 (kNN k=20, val)", "linear_cls"),
    ),
    entry="linear",
)

TABLES: tuple[Table, ...] = (
    Table("table1", "Table 1: object detection on PASCAL VOC", (_VOC_DET,)),
    Table("table2", "Table 2: object detection and instance segmentation on COCO", (_COCO,)),
    Table("table3", "Table 3: semantic segmentation on PASCAL VOC and Cityscapes", (_VOC_SEG, _CITY_SEG)),
)
LINEAR_TABLE = Table("table_linear", "Linear classification on ImageNet (frozen backbone)", (_LINEAR,))

ABLATIONS: tuple[Ablation, ...] = (
    Ablation(
        Table(
            "ablation_lambda",
            "Ablation: loss weight λ of DenseCL (COCO pretraining)",
            (_VOC_DET, _LINEAR),
            reference_row="densecl_coco",
        ),
        parameter="MODEL.DENSECL.LAMBDA",
        symbol="λ",
        key_part="lambda",
        paper_values=(0.0, 0.3, 0.5, 0.7, 1.0),
        finding="VOC detection AP improves as λ grows (0.7 > 0.5), while linear top-1 prefers a smaller λ "
        "(0.3 > 0.5); λ = 0 is MoCo-v2 (global loss only), λ = 1 the dense loss only. The paper keeps "
        "λ = 0.5 as the trade-off between the two.",
        bounds=(0.0, 1.0),
    ),
    Ablation(
        Table(
            "ablation_grid",
            "Ablation: grid size S of the dense head (COCO pretraining)",
            (_VOC_DET,),
            reference_row="densecl_coco",
        ),
        parameter="MODEL.DENSECL.GRID_SIZE",
        symbol="S",
        key_part="grid",
        paper_values=(1, 3, 5, 7),
        finding="At 224 px input the native C5 grid S = 7 gives the best VOC detection AP.",
        bounds=(1, 64),
    ),
    Ablation(
        Table(
            "ablation_matching",
            "Ablation: how dense positives are matched (COCO pretraining)",
            (_VOC_DET,),
            reference_row="densecl_coco",
        ),
        parameter="MODEL.DENSECL.MATCHING",
        symbol="matching",
        key_part="matching",
        paper_values=("feature", "geometry"),
        finding="Matching positives by backbone-feature argmax (DenseCL) or by the known geometric "
        "correspondence of the two crops gives almost the same VOC detection AP.",
        choices=("feature", "geometry"),
    ),
)

TASKS: dict[str, Task] = {task.name: task for table in (*TABLES, LINEAR_TABLE) for task in table.tasks}
ROWS_BY_KEY: dict[str, Row] = {row.key: row for row in ROWS}
# The table whose output directory holds a task's cells, whichever tables show them (a cell runs once).
TABLE_OF_TASK: dict[str, Table] = {
    task.name: table for table in (*TABLES, LINEAR_TABLE) for task in table.tasks
}
ABLATIONS_BY_NAME: dict[str, Ablation] = {a.table.name: a for a in ABLATIONS}
ALL_TABLES: dict[str, Table] = {t.name: t for t in (*TABLES, LINEAR_TABLE, *(a.table for a in ABLATIONS))}
TABLE_GROUPS: dict[str, tuple[str, ...]] = {"ablations": tuple(ABLATIONS_BY_NAME)}  # --tables shorthands


def table_names(tokens: tuple[int | str, ...]) -> tuple[str, ...]:
    """`(1, "ablation_lambda")` -> `("table1", "ablation_lambda")`: numbers, names and `ablations` (all)."""
    names: list[str] = []
    for token in tokens:
        text = str(token).strip()
        if text.isdigit():
            text = f"table{text}"
        for name in TABLE_GROUPS.get(text, (text,)):
            if name not in ALL_TABLES:
                raise KeyError(name)
            names.append(name)
    return tuple(dict.fromkeys(names))
