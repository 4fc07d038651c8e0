"""`python -m benchmarks {reproduce,evaluate,plan,report,make-data,check-data}`: the tables in one command.

reproduce   run the job graph of a profile (resumable), then write results/<profile>/
            (--tables 1,2,3 by default; also table_linear, ablation_lambda, ablation_grid,
            ablation_matching, or `ablations` for all three)
evaluate    benchmark your own ResNet checkpoint as a new row next to the profile's rows and the paper's
plan        print every job, its exact command, whether it is done and how long the rest takes
            here (= reproduce --dry-run)
report      rebuild results/<profile>/ from the cells that exist
make-data   generate the synthetic datasets of a scaled profile
check-data  validate a dataset root (real or synthetic) before spending compute on it
"""

import argparse


def str_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def positive_int(text: str) -> int:
    """An argparse type for counts that must be at least 1 (e.g. --jobs)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, e.g. 2; got {text!r}")
    return value


def _add_redo_stale(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redo-stale",
        action="store_true",
        help="delete and redo the finished jobs that `plan` marks stale (their command, dataset root or an "
        "upstream job changed) and every job depending on them",
    )


def _add_profile(parser: argparse.ArgumentParser, default: str | None = "tiny") -> None:
    parser.add_argument("--profile", default=default, help="profile name (benchmarks/profiles/) or YAML path")
    parser.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override profile keys, e.g. tasks.voc_det.overrides.SOLVER.MAX_ITER=200",
    )


def _add_rows(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rows",
        type=str_list,
        default=None,
        help="row keys, e.g. random,densecl_coco,densecl_coco_lambda0.3",
    )


def _add_selection(parser: argparse.ArgumentParser, tables: tuple[str, ...] = ("1", "2", "3")) -> None:
    parser.add_argument(
        "--tables",
        type=str_list,
        default=tables,
        help="paper table numbers and/or table names, e.g. 1,3 or 1,table_linear,ablation_lambda; "
        f"`ablations` = all ablation tables (default: {','.join(tables)})",
    )
    parser.add_argument("--seeds", type=int, default=None, help="trials per cell (default: the profile's)")
    parser.add_argument("--num-gpus", type=int, default=None, help="GPUs per job (default: the profile's)")
    parser.add_argument(
        "--executor",
        choices=("local", "slurm"),
        default=None,
        help="where jobs run (default: local; `plan` and --dry-run default to the executor and GPU count "
        "of the last run recorded in state.json, so a plan on a login node matches a SLURM run)",
    )
    parser.add_argument(
        "--wandb",
        default="",
        metavar="PROJECT",
        help="log every pretraining run and fine-tuning cell to this W&B project (needs `pip install wandb`; "
        "WANDB_MODE=offline keeps the runs on disk)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    reproduce = sub.add_parser("reproduce", help="run Tables 1-3 for a profile (resumable)")
    _add_profile(reproduce)
    _add_selection(reproduce)
    _add_rows(reproduce)
    reproduce.add_argument("--jobs", type=positive_int, default=1, help="independent jobs run at once")
    reproduce.add_argument(
        "--dry-run", action="store_true", help="print the plan and how long it should take here, run nothing"
    )
    _add_redo_stale(reproduce)
    evaluate = sub.add_parser("evaluate", help="benchmark your own ResNet checkpoint as a new row")
    evaluate.add_argument("--checkpoint", required=True, help="ResNet checkpoint (.pth, .pth.tar, .ckpt)")
    evaluate.add_argument("--name", required=True, help="row name: letters, digits, _ . - (e.g. byol_r50)")
    evaluate.add_argument("--force", action="store_true", help="replace another checkpoint under --name")
    _add_profile(evaluate)
    _add_selection(evaluate, tables=("1", "2", "3", "table_linear"))
    evaluate.add_argument("--jobs", type=positive_int, default=1, help="independent jobs run at once")
    evaluate.add_argument("--dry-run", action="store_true", help="print the plan and estimate, run nothing")
    _add_redo_stale(evaluate)
    evaluate.set_defaults(rows=None)  # the row is --name
    plan = sub.add_parser("plan", help="print the job graph, what is done and how long the rest takes here")
    _add_profile(plan)
    _add_selection(plan)
    _add_rows(plan)
    plan.add_argument("--jobs", type=positive_int, default=1, help="jobs run at once, for the estimate")
    plan.set_defaults(dry_run=True)
    report = sub.add_parser("report", help="rebuild results/<profile>/ from finished cells")
    _add_profile(report)
    make_data = sub.add_parser("make-data", help="generate the synthetic datasets")
    make_data.add_argument("--profile", choices=("smoke", "tiny"), required=True)
    make_data.add_argument("--root", default=None, help="default: datasets/synthetic-<profile>")
    make_data.add_argument("--seed", type=int, default=0)
    check = sub.add_parser("check-data", help="validate a dataset root")
    group = check.add_mutually_exclusive_group()
    group.add_argument("--root", default=None, help="dataset root in Detectron2's layout")
    group.add_argument("--profile", default=None, help="check the data root of this profile")
    check.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE")
    check.add_argument(
        "--datasets",
        nargs="+",
        default=None,
        help="only these datasets (default: all; imagenet_val where imagenet/val exists)",
    )
    return parser
