"""Reading the runs that `WANDB_MODE=offline` leaves in an OUTPUT_DIR (see the `wandb_offline` fixture)."""

from pathlib import Path


def offline_runs(out_dir: Path) -> tuple[str, list[bytes]]:
    """The W&B run id kept in `out_dir` and the raw record files of every offline session of that run.

    wandb writes its records as protobuf; keys and logged strings appear verbatim in the bytes, which is
    what the tests look for (exact values and steps are checked against a recording run elsewhere).
    """
    run_id = (out_dir / "wandb_run_id.txt").read_text().strip()
    files = sorted((out_dir / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    return run_id, [f.read_bytes() for f in files]


class RecordingRun:
    """Stands in for a wandb Run where a test checks the exact calls: log(data, step), summary, finish."""

    def __init__(self):
        self.logged: list[tuple[int, dict]] = []
        self.summary: dict = {}
        self.exit_code: int | None = None

    def log(self, data: dict, step: int) -> None:
        self.logged.append((step, dict(data)))

    def finish(self, exit_code: int = 0) -> None:
        self.exit_code = exit_code
