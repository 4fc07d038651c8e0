"""The job graph of one profile: make-data -> pretrain -> convert -> fine-tune+evaluate cells.

Every job is a subprocess command with an output marker: a job is done iff its marker exists
(pretraining: model_final.pth; conversion: the .pkl; a cell: metrics.json). Pretraining runs are shared by
every table. A cell (task, row, seed) lives under the directory of the table owning its task
(`TABLE_OF_TASK`: table1/voc_det/..., table_linear/linear_cls/...) whichever tables show it, so an
ablation's main-run row and the paper table share one cell. `CommandBuilder` is the seam that turns a step
into a command line; tests swap it for one that writes marker files without training anything.
"""

from __future__ import annotations

import ast
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from benchmarks.experiments import ALL_TABLES, TABLE_GROUPS, TABLE_OF_TASK, TASKS, Row, table_names
from benchmarks.matrix import Matrix, TableView
from benchmarks.profile import BenchmarkError, PretrainRun, Profile, TaskSpec, overrides_argv

MAKE_DATA_STAMPS = ".densebench-make-data*.json"  # every make-data stamp of a root (glob)
# The one stamp of a root before stamps named their profile and seed (these are inside it).
LEGACY_MAKE_DATA_STAMP = ".densebench-make-data.json"


def make_data_stamp(profile: str, seed: int) -> str:
    """The file `python -m benchmarks make-data` writes into the root once that profile and seed's data
    is complete; the data job is done iff it exists, so data another make-data replaced is not."""
    return MAKE_DATA_STAMPS.replace("*", f"-{profile}-seed{seed}")


def _data_marker(root: Path, profile: str, seed: int) -> Path:
    """The data job's marker: this profile and seed's stamp, or a legacy stamp recording the same (so an
    older finished run's data, and everything made from it, stays done)."""
    stamp, legacy = root / make_data_stamp(profile, seed), root / LEGACY_MAKE_DATA_STAMP
    if stamp.exists() or not legacy.exists():
        return stamp
    try:
        recorded = json.loads(legacy.read_text())
    except (OSError, ValueError):
        return stamp
    same = isinstance(recorded, dict) and (recorded.get("profile"), recorded.get("seed")) == (profile, seed)
    return legacy if same else stamp


# Directories (relative to the dataset root) each step reads; checked before a real-data run starts.
PRETRAIN_DATA_DIRS = {"imagenet": ("imagenet/train",), "coco": ("coco/train2017",)}
TASK_DATA_DIRS = {
    "voc_det": ("VOC2007/JPEGImages", "VOC2007/Annotations", "VOC2012/JPEGImages", "VOC2012/Annotations"),
    "coco_det_inst": ("coco/train2017", "coco/val2017", "coco/annotations"),
    "voc_sem_seg": ("VOC2012/JPEGImages", "VOC2012/SegmentationClassAug", "VOC2012/ImageSets/Segmentation"),
    "cityscapes_sem_seg": ("cityscapes/leftImg8bit", "cityscapes/gtFine"),
    "linear_cls": ("imagenet/train", "imagenet/val"),
}
# torchvision's published GFLOPs per 224 px image (ResNet model cards); R-50 / R-18 = 4.09 / 1.81 ~ 2.3.
RESNET_GFLOPS = {18: 1.81, 34: 3.66, 50: 4.09, 101: 7.80, 152: 11.51}


@dataclass(frozen=True)
class CellKey:
    """One fine-tuning + evaluation cell; `table` is the table owning the task (its output directory)."""

    table: str
    task: str
    row: str
    seed: int


@dataclass
class Job:
    """A node of the graph: one subprocess, done iff `marker` exists."""

    id: str  # e.g. "pretrain/densecl_coco", "cell/table1/voc_det/random/seed0"
    kind: str  # "data" | "pretrain" | "convert" | "cell"
    argv: list[str]
    marker: Path
    log: Path
    deps: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cell: CellKey | None = None
    cleanup: tuple[Path, ...] = ()  # glob patterns deleted once the job is done (keep_checkpoints: false)

    @property
    def duration_key(self) -> str:
        """Jobs expected to take about as long: a cell's task ("cell/voc_det"), otherwise the kind."""
        return f"cell/{self.cell.task}" if self.cell is not None else self.kind

    def is_done(self) -> bool:
        return self.marker.exists()

    @property
    def output(self) -> Path:
        """What to delete to redo the job from scratch: the run directory of a pretraining run or a cell
        (its checkpoints would resume it), else the marker (the converted .pkl, the make-data stamp)."""
        return self.marker.parent if self.kind in ("pretrain", "cell") else self.marker


@dataclass(frozen=True)
class Selection:
    """Which part of the matrix to run: tables (paper numbers or names), row keys (None = the profile's,
    custom rows only when named) and seed count."""

    tables: tuple[int | str, ...] = (1, 2, 3)
    rows: tuple[str, ...] | None = None
    seeds: int | None = None  # None = the profile's seeds per task; N = seeds 0..N-1 for every task

    @property
    def table_names(self) -> tuple[str, ...]:
        """`(1, "ablations")` -> `("table1", "ablation_lambda", "ablation_grid", "ablation_matching")`."""
        try:
            return table_names(self.tables)
        except KeyError as exc:
            raise BenchmarkError(
                f"--tables {','.join(map(str, self.tables))}: unknown table {exc.args[0]!r}; expected paper "
                f"numbers 1, 2, 3 or names from {[*ALL_TABLES, *TABLE_GROUPS]}, e.g. "
                "--tables 1,ablation_lambda."
            ) from None

    def validate(self, matrix: Matrix) -> None:
        for name in self.table_names:
            matrix.view(name)  # an ablation without its base run raises here
        bad_rows = [r for r in self.rows or () if r not in matrix.rows]
        if bad_rows:
            raise BenchmarkError(f"--rows {bad_rows}: unknown rows; expected keys from {list(matrix.rows)}.")
        if self.seeds is not None and self.seeds < 1:
            raise BenchmarkError(f"--seeds {self.seeds}: expected a positive number of trials.")


class CommandBuilder:
    """Turns each step into the real command line of our CLIs (pretrain.train_net, transfer.convert,
    transfer.train_net, pretrain.linear_eval, benchmarks make-data)."""

    def __init__(self, python: str = sys.executable, num_gpus: int = 1):
        self.python = python
        self.num_gpus = num_gpus  # > 1 only where CUDA devices are present (__main__.effective_gpus)

    def make_data(self, synthetic: str, root: Path, seed: int) -> list[str]:
        return [self.python, "-m", "benchmarks", "make-data", "--profile", synthetic, "--root", str(root),
                "--seed", str(seed)]  # fmt: skip

    def pretrain(self, run: PretrainRun, out_dir: Path, data_root: Path, resume: bool) -> list[str]:
        launcher = [self.python, "-m", "pretrain.train_net"]
        if self.num_gpus > 1:  # torchrun: one process per GPU, SOLVER.BATCH_SIZE stays the total batch
            launcher = [self.python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                        str(self.num_gpus), "-m", "pretrain.train_net"]  # fmt: skip
        return [*launcher, "--config-file", run.config, *(["--resume"] if resume else []),
                *overrides_argv(run.overrides), "DATA.ROOT", str(data_root),
                "OUTPUT_DIR", str(out_dir)]  # fmt: skip

    def convert(self, src: Path, dst: Path) -> list[str]:
        return [self.python, "-m", "transfer.convert", str(src), str(dst)]

    def cell(self, spec: TaskSpec, weights: Path | None, seed: int, out_dir: Path, resume: bool) -> list[str]:
        gpus = ["--num-gpus", str(self.num_gpus)] if self.num_gpus > 1 else []
        return [self.python, "-m", "transfer.train_net", "--config-file", spec.config, *gpus,
                *(["--resume"] if resume else []), *overrides_argv(spec.overrides),
                "MODEL.WEIGHTS", str(weights) if weights else "", "SEED", str(seed),
                "OUTPUT_DIR", str(out_dir)]  # fmt: skip

    def linear(
        self, spec: TaskSpec, weights: Path | None, seed: int, out_dir: Path, data_root: Path
    ) -> list[str]:
        """A `linear_cls` cell: frozen backbone + linear classifier and kNN on ROOT/imagenet/{train,val}."""
        return [self.python, "-m", "pretrain.linear_eval", "--config-file", spec.config,
                *overrides_argv(spec.overrides), "MODEL.WEIGHTS", str(weights) if weights else "",
                "SEED", str(seed), "DATA.ROOT", str(data_root), "OUTPUT_DIR", str(out_dir)]  # fmt: skip


def depth_overrides(task: str, depth: int) -> dict[str, object]:
    """Keys switching a cell of `task` to a ResNet-`depth` backbone (custom rows of another depth)."""
    if TASKS[task].entry == "linear":
        return {"MODEL.ARCH": f"resnet{depth}"}
    return {"MODEL.RESNETS.DEPTH": depth, "MODEL.RESNETS.RES2_OUT_CHANNELS": 64 if depth < 50 else 256}


def _planned(row: Row, view: TableView, spec: TaskSpec, selection: Selection) -> bool:
    """Custom rows run only when named (`evaluate`); ablation rows always; paper rows per the profile."""
    if selection.rows is not None and row.key not in selection.rows:
        return False
    if row.method == "custom":
        return selection.rows is not None
    return view.ablation is not None or row.key in spec.rows


def _task_key(task: str) -> str:
    """The profile key configuring `task`."""
    return "linear_eval" if task == "linear_cls" else f"tasks.{task}"


def _no_cells(name: str, view: TableView, profile: Profile, selection: Selection) -> BenchmarkError:
    """Why a selected table has no cell to run (the rows asked for are not among its rows), and the fix."""
    asked = f"--rows {','.join(selection.rows or ())}"
    if view.ablation is not None:
        why = f"its rows are the {view.ablation.parameter} variants {[r.key for r in view.rows]}"
        fix = "name some of them in --rows, or leave --rows out"
    else:
        lists = [f"{_task_key(t.name)}.rows = {list(profile.tasks[t.name].rows)}" for t in view.table.tasks]
        why = f"the rows its tasks fine-tune are {'; '.join(lists)}"
        fix = (
            f"choose --rows from those lists, or add the row to a list in the profile (e.g. --set "
            f"{_task_key(view.table.tasks[0].name)}.rows=[...])"
        )
    return BenchmarkError(
        f"--tables {name}: {asked} selects no cell of it in profile {profile.source}: {why}. Fix: {fix}."
    )


def plan_cells(profile: Profile, selection: Selection, matrix: Matrix | None = None) -> list[CellKey]:
    """Every (task, row, seed) cell the selected tables show, once each, in table order. A selected table
    with a task the profile does not configure, or with no cell at all, is refused."""
    matrix = matrix or Matrix(profile)
    selection.validate(matrix)
    cells: dict[CellKey, None] = {}
    for name in selection.table_names:
        view = matrix.view(name)
        table_cells = []
        for task in view.table.tasks:
            spec = profile.tasks.get(task.name)
            if spec is None:
                raise BenchmarkError(
                    f"--tables {name}: profile {profile.source} does not configure its task {task.name!r}; "
                    f"add {_task_key(task.name)} to the profile (see benchmarks/profiles/tiny.yaml), or "
                    "leave the table out of --tables."
                )
            seeds = tuple(range(selection.seeds)) if selection.seeds else spec.seeds
            home = TABLE_OF_TASK[task.name].name
            rows = [r.key for r in view.rows if _planned(r, view, spec, selection)]
            table_cells += [CellKey(home, task.name, r, s) for r in rows for s in seeds]
        if not table_cells:
            raise _no_cells(name, view, profile, selection)
        cells.update(dict.fromkeys(table_cells))
    return list(cells)


def cell_dir(output_dir: Path, cell: CellKey) -> Path:
    return output_dir / cell.table / cell.task / cell.row / f"seed{cell.seed}"


def _log(output_dir: Path, job_id: str) -> Path:
    return output_dir / "logs" / f"{job_id}.log"


def _cleanup(profile: Profile, run_dir: Path, patterns: tuple[str, ...]) -> tuple[Path, ...]:
    """Intermediate checkpoints to delete after success; none when the profile keeps checkpoints."""
    return () if profile.keep_checkpoints else tuple(run_dir / p for p in patterns)


def _weights_jobs(
    matrix: Matrix,
    row: Row,
    data_root: Path,
    data_deps: tuple[str, ...],
    commands: CommandBuilder,
    env: dict[str, str],
) -> list[Job]:
    """Pretraining (unless a user checkpoint is given) and conversion jobs producing a row's .pkl."""
    profile = matrix.profile
    out = profile.output_dir
    pkl = out / "weights" / f"{row.key}.pkl"
    jobs = []
    run = matrix.pretrain_run(row)
    if row.method == "custom":
        src, convert_deps = Path(row.checkpoint), ()
    elif row.method == "supervised" and profile.supervised_checkpoint:
        src, convert_deps = profile.supervised_checkpoint_path, ()
    elif run is not None:
        run_dir = out / "pretrain" / row.key
        src, convert_deps = run_dir / "model_final.pth", (f"pretrain/{row.key}",)
        resume = (run_dir / "checkpoint_last.pth").exists()
        jobs.append(
            Job(
                f"pretrain/{row.key}",
                "pretrain",
                commands.pretrain(run, run_dir, data_root, resume),
                src,
                _log(out, f"pretrain/{row.key}"),
                data_deps,
                env,
                cleanup=_cleanup(profile, run_dir, ("checkpoint_last.pth", "checkpoint_epoch_*.pth")),
            )
        )
    elif row.method == "supervised":
        src, convert_deps = Path("<supervised_checkpoint not set>"), ()
    else:
        raise BenchmarkError(
            f"Profile {profile.source} has no pretrain run for row {row.key!r}; add "
            f"pretrain.runs.{row.key} with a config file, or deselect the row with --rows."
        )
    jobs.append(
        Job(
            f"convert/{row.key}",
            "convert",
            commands.convert(src, pkl),
            pkl,
            _log(out, f"convert/{row.key}"),
            convert_deps,
            env,
        )
    )
    return jobs


def build_graph(
    profile: Profile,
    selection: Selection,
    commands: CommandBuilder | None = None,
    matrix: Matrix | None = None,
) -> list[Job]:
    """All jobs of the selection in dependency order (a job only depends on jobs listed before it)."""
    commands = commands or CommandBuilder()
    matrix = matrix or Matrix(profile)
    cells = plan_cells(profile, selection, matrix)
    out = profile.output_dir
    data_root = profile.data_root or Path(profile.data_root_spec)
    env = {"DETECTRON2_DATASETS": str(data_root), "PYTHONUNBUFFERED": "1"}
    jobs: list[Job] = []
    data_deps: tuple[str, ...] = ()
    if profile.synthetic:
        jobs.append(
            Job(
                "data/make",
                "data",
                commands.make_data(profile.synthetic, data_root, profile.data_seed),
                _data_marker(data_root, profile.synthetic, profile.data_seed),
                _log(out, "data/make"),
                (),
                env,
            )
        )
        data_deps = ("data/make",)
    for row_key in dict.fromkeys(c.row for c in cells):
        row = matrix.rows[row_key]
        if row.needs_weights:
            jobs += _weights_jobs(matrix, row, data_root, data_deps, commands, env)
    for cell in cells:
        row, spec = matrix.rows[cell.row], profile.tasks[cell.task]
        if row.depth is not None and row.depth != profile.backbone_depth:
            spec = replace(spec, overrides={**spec.overrides, **depth_overrides(cell.task, row.depth)})
        weights = out / "weights" / f"{row.key}.pkl" if row.needs_weights else None
        deps = data_deps + ((f"convert/{row.key}",) if row.needs_weights else ())
        run_dir = cell_dir(out, cell)
        resume = (run_dir / "last_checkpoint").exists()
        job_id = f"cell/{cell.table}/{cell.task}/{cell.row}/seed{cell.seed}"
        if TASKS[cell.task].entry == "linear":
            argv = commands.linear(spec, weights, cell.seed, run_dir, data_root)
        else:
            argv = commands.cell(spec, weights, cell.seed, run_dir, resume)
        jobs.append(
            Job(
                job_id,
                "cell",
                argv,
                run_dir / "metrics.json",
                _log(out, job_id),
                deps,
                env,
                cell,
                _cleanup(profile, run_dir, ("model_*.pth", "last_checkpoint")),
            )
        )
    return jobs


def _as_str(text: str) -> str:
    """`text` as a `KEY VALUE` value that yacs reads back as this very str (quoted only where needed:
    a project named 2024 would otherwise become an int)."""
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return text if parsed == text else repr(text)


def log_to_wandb(jobs: list[Job], project: str, group: str) -> list[Job]:
    """The jobs, with every pretraining run and Detectron2 cell logging to W&B `project` (runs grouped by
    `group`, named by job id; transfer/wandb_logging.py). The linear-probe cells do not log to W&B."""
    logged = []
    for job in jobs:
        if job.kind == "pretrain" or (job.cell is not None and TASKS[job.cell.task].entry == "transfer"):
            wandb = {"WANDB.PROJECT": project, "WANDB.GROUP": group, "WANDB.NAME": job.id}
            tail = [item for key, name in wandb.items() for item in (key, _as_str(name))]
            job = replace(job, argv=[*job.argv, *tail])
        logged.append(job)
    return logged


def _dataset_problems(profile: Profile, cells: list[CellKey], rows: set[Row], matrix: Matrix) -> list[str]:
    """Missing directories of the real datasets the selected cells and pretraining runs read."""
    root = profile.data_root
    if root is None:
        return [
            f"The real datasets are missing: the profile's dataset root {profile.data_root_spec!r} uses an "
            "unset environment variable, so there is nowhere to look for them; export "
            "DETECTRON2_DATASETS=/path/to/datasets (Detectron2's layout, README 'Real datasets') before "
            "running, and validate it with `python -m benchmarks check-data --root $DETECTRON2_DATASETS`."
        ]
    needed = {d for c in cells for d in TASK_DATA_DIRS[c.task]}
    needed |= {d for r in rows if matrix.pretrain_run(r) for d in PRETRAIN_DATA_DIRS[r.pretrain_data]}
    missing = [str(root / d) for d in sorted(needed) if not (root / d).is_dir()]
    if not missing:
        return []
    return [
        f"Dataset directories missing under the dataset root {root} ({profile.data_root_spec}): "
        f"{', '.join(missing)}. Put the real datasets there in Detectron2's layout (README 'Real "
        "datasets'), or point DETECTRON2_DATASETS at the folder that holds them, then check it with "
        f"`python -m benchmarks check-data --root {root}`."
    ]


def preflight(profile: Profile, selection: Selection, matrix: Matrix | None = None) -> list[str]:
    """Problems that make a run pointless: missing real datasets, a missing supervised checkpoint."""
    matrix = matrix or Matrix(profile)
    cells = plan_cells(profile, selection, matrix)
    rows = {matrix.rows[c.row] for c in cells}
    problems = [] if profile.synthetic else _dataset_problems(profile, cells, rows, matrix)  # synthetic: made
    user_checkpoint = profile.supervised_checkpoint or "supervised_imagenet" not in profile.pretrain_runs
    if any(r.method == "supervised" for r in rows) and user_checkpoint:
        ckpt = profile.supervised_checkpoint_path
        if ckpt is None or not ckpt.is_file():
            problems.append(
                f"The supervised row needs a torchvision ImageNet ResNet checkpoint, but "
                f"supervised_checkpoint={profile.supervised_checkpoint!r} is not a file; pass "
                "--set supervised_checkpoint=/path/resnet50.pth, or leave the row out with --rows."
            )
    return problems
