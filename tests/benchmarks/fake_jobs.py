"""A CommandBuilder whose jobs train nothing: each records its call and writes its marker (and metrics).

Cell scores are deterministic: a per-row offset (random init lowest) plus a per-seed jitter, so rows with
3+ seeds have a spread for Welch's test. Shared by the ablation and `evaluate` tests.
"""

import json
import sys
import zlib
from pathlib import Path

from benchmarks.experiments import TASKS
from benchmarks.jobs import CommandBuilder, make_data_stamp

SCRIPT = """
import sys
from pathlib import Path
marker, counter, job, payload = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
with open(counter, "a") as f:
    f.write(job + "\\n")
marker.parent.mkdir(parents=True, exist_ok=True)
marker.write_text(payload)
"""
JITTER = (0.0, 1.0, -1.0, 0.5, -0.5)  # added to a row's score per seed


def fake_score(row: str, seed: int) -> float:
    offset = 10.0 if row == "random" else 30.0 + zlib.crc32(row.encode()) % 100 / 10
    return offset + JITTER[seed % len(JITTER)]


class FakeCommands(CommandBuilder):
    def __init__(self, counter: Path):
        super().__init__()
        self.counter = str(counter)

    def _fake(self, marker: Path, job: str, payload: str = "{}") -> list[str]:
        return [sys.executable, "-c", SCRIPT, str(marker), self.counter, job, payload]

    def _metrics(self, task: str, weights, seed: int, out_dir: Path, config: str) -> list[str]:
        row = out_dir.parent.name
        metrics = {m.name: fake_score(row, seed) for m in TASKS[task].metrics}
        payload = json.dumps({"task": task, "metrics": metrics, "iters": 4, "wall_s": 0.5,
                              "weights": str(weights or ""), "config_file": config})  # fmt: skip
        return self._fake(out_dir / "metrics.json", f"cell/{task}/{row}/seed{seed}", payload)

    def make_data(self, synthetic, root, seed):
        return self._fake(root / make_data_stamp(synthetic, seed), "data/make")

    def pretrain(self, run, out_dir, data_root, resume):
        return self._fake(out_dir / "model_final.pth", f"pretrain/{run.key}")

    def convert(self, src, dst):
        return self._fake(dst, f"convert/{dst.stem}")

    def cell(self, spec, weights, seed, out_dir, resume):
        return self._metrics(spec.name, weights, seed, out_dir, spec.config)

    def linear(self, spec, weights, seed, out_dir, data_root):
        return self._metrics(spec.name, weights, seed, out_dir, spec.config)


def calls(counter: Path) -> list[str]:
    return counter.read_text().splitlines() if counter.exists() else []


def settings(tmp_path: Path) -> list[str]:
    """--set values isolating a profile's output, results and data under tmp_path."""
    return [
        f"output_dir={tmp_path / 'out'}",
        f"results_dir={tmp_path / 'results'}",
        f"data.root={tmp_path / 'data'}",
    ]
