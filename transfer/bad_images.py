"""The record of unreadable images a run skipped: `<OUTPUT_DIR>/bad_images.txt`, one `path<TAB>reason` line
per distinct file, and a limit past which a dataset counts as broken rather than dirty.

Used by pretraining (`DATA.SKIP_BAD_IMAGES`, pretrain/bad_images.py) and fine-tuning
(`TRANSFER.SKIP_BAD_IMAGES`, transfer/data/guarded_mapper.py); each supplies the error that names its own
limit key and fix. No torch or Detectron2 import: pretraining's DataLoader workers load this module too.
"""

import logging
import os
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)


def bad_images_file(out_dir: Path, rank: int, world_size: int) -> Path:
    """`bad_images.txt`, or `bad_images.rank<R>.txt` under DDP (each process appends to its own file)."""
    return out_dir / ("bad_images.txt" if world_size == 1 else f"bad_images.rank{rank}.txt")


def read_bad_images(path: Path) -> dict[str, str]:
    """Path -> reason of every file recorded in `path` (empty when it does not exist)."""
    if not path.is_file():
        return {}
    records = {}
    for line in path.read_text().splitlines():
        image, _, reason = line.partition("\t")
        records.setdefault(image, reason)
    return records


def skipped_images(out_dir: Path) -> set[str]:
    """Paths listed in OUTPUT_DIR's bad_images*.txt (every process's, on a shared file system)."""
    return {path for f in Path(out_dir).glob("bad_images*.txt") for path in read_bad_images(f)}


class BadImageLog:
    """Appends skipped images to `path`; safe to share with DataLoader workers (state lives in the file).

    `too_many(path, count, limit)` builds the exception raised once more than `limit` distinct files are
    recorded (a module-level function, so the log pickles into worker processes).
    """

    def __init__(self, path: Path, limit: int, too_many: Callable[[Path, int, int], Exception]):
        self.path = Path(path)
        self.limit = limit
        self.too_many = too_many

    def record(self, image: str | Path, reason: str) -> None:
        """Append `image` if it is new; raise `too_many(...)` past the limit."""
        known = read_bad_images(self.path)
        if str(image) not in known:
            reason = " ".join(reason.split())
            # one short line per write: appends from several DataLoader workers do not interleave
            with open(self.path, "a") as f:
                f.write(f"{image}\t{reason}\n")
                f.flush()
                os.fsync(f.fileno())
            known[str(image)] = reason
            logger.warning("skipping unreadable image %s (%s); listed in %s", image, reason, self.path)
        if len(known) > self.limit:
            raise self.too_many(self.path, len(known), self.limit)
