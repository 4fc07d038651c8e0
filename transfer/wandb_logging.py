"""Weights & Biases logging of pretraining and fine-tuning runs (opt in: `WANDB.PROJECT <name>`).

Both CLIs add the same `WANDB` config node (`add_wandb_config`); an empty PROJECT (the default) keeps
wandb out entirely. A run lives in OUTPUT_DIR: its id is kept in `wandb_run_id.txt`, so `--resume`
continues the same W&B run (W&B ignores steps below the last one it recorded, so the iterations between
the last checkpoint and the interruption keep the interrupted run's values instead of appearing twice).
`WANDB_MODE=offline` (wandb's own variable) writes runs under OUTPUT_DIR/wandb for a later `wandb sync`;
`python -m benchmarks reproduce --wandb PROJECT` logs every pretraining run and cell of the matrix,
grouped by profile and named by job id.
"""

import secrets
from pathlib import Path

from detectron2.utils.events import EventWriter, get_event_storage

RUN_ID_FILE = "wandb_run_id.txt"


def add_wandb_config(cfg) -> None:
    """Add the WANDB node (yacs CfgNode of either package) with its defaults."""
    node = type(cfg)()
    node.PROJECT = ""  # W&B project; "" = no W&B logging
    node.ENTITY = ""  # W&B user or team; "" = wandb's default entity
    node.GROUP = ""  # groups runs in the W&B UI (benchmarks: the profile name); "" = none
    node.NAME = ""  # run name (benchmarks: the job id); "" = a generated name
    cfg.WANDB = node


def import_wandb(cfg, error: type[Exception]):
    """The wandb module when WANDB.PROJECT is set (None when it is empty); `error` (the CLI's user-facing
    exception) when wandb is not installed, so a launcher can check before it starts any process."""
    if not cfg.WANDB.PROJECT:
        return None
    try:
        import wandb
    except ImportError:
        raise error(
            f"WANDB.PROJECT is {cfg.WANDB.PROJECT!r} but the wandb package is not installed; "
            "`pip install wandb` (or `.venv/bin/pip install -e '.[wandb]'`), or leave WANDB.PROJECT empty."
        ) from None
    return wandb


def start_run(cfg, job_type: str, error: type[Exception]):
    """The W&B run of cfg.OUTPUT_DIR (resumed if it has one), or None when WANDB.PROJECT is empty.

    `cfg` (its YAML dump) becomes the run's config; `error` as in `import_wandb`.
    """
    wandb = import_wandb(cfg, error)
    if wandb is None:
        return None
    import yaml

    out_dir = Path(cfg.OUTPUT_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    id_file = out_dir / RUN_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)  # W&B: [a-z0-9]
    id_file.write_text(run_id + "\n")
    return wandb.init(
        project=cfg.WANDB.PROJECT,
        entity=cfg.WANDB.ENTITY or None,
        group=cfg.WANDB.GROUP or None,
        name=cfg.WANDB.NAME or None,
        job_type=job_type,
        id=run_id,
        resume="allow",
        dir=str(out_dir),
        config=yaml.safe_load(cfg.dump()),
    )


class WandbWriter(EventWriter):
    """Detectron2 EventWriter: the storage's latest scalars (window-median where the hint asks for it,
    like TensorboardXWriter) logged at their iteration, each (key, iteration) once."""

    def __init__(self, run, window_size: int = 20):
        self._run = run
        self._window_size = window_size
        self._last_write = -1

    def write(self) -> None:
        by_iter: dict[int, dict[str, float]] = {}
        for key, (value, it) in get_event_storage().latest_with_smoothing_hint(self._window_size).items():
            if it > self._last_write:
                by_iter.setdefault(it, {})[key] = value
        for it in sorted(by_iter):
            self._run.log(by_iter[it], step=it)
        if by_iter:
            self._last_write = max(by_iter)
