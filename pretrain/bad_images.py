"""Opt-in tolerance of unreadable images during pretraining (`DATA.SKIP_BAD_IMAGES True`).

A self-downloaded ImageNet or a folder of user images can hold a few truncated or mislabelled files; a
run of several days should neither die at one of them nor silently train on fewer images. With the option
on, an image that fails to decode is replaced by the next readable image of the list (the same one every
epoch and after a resume), logged, and appended to `<OUTPUT_DIR>/bad_images.txt` (one `path<TAB>reason`
line per distinct file); more than `DATA.MAX_BAD_IMAGES` distinct failures stop the run with a
PretrainError, because at that point the dataset is broken rather than dirty. Off (the default), the first
unreadable image stops the run with its path. `python -m benchmarks check-data` finds such files before
any compute is spent.
"""

import logging
import os
from pathlib import Path

from .errors import PretrainError

logger = logging.getLogger("pretrain")


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


class BadImageLog:
    """The record of skipped images; safe to share with DataLoader workers (state lives in the file)."""

    def __init__(self, path: Path, limit: int):
        self.path = path
        self.limit = limit

    def record(self, image: Path, reason: str) -> None:
        """Append `image` if it is new; PretrainError once more than `limit` distinct files are recorded."""
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
            raise PretrainError(
                f"{len(known)} images could not be decoded (listed in {self.path}), more than "
                f"DATA.MAX_BAD_IMAGES {self.limit}: the dataset looks broken, not just dirty. Check it "
                "with `python -m benchmarks check-data --root <root> --datasets imagenet` (or coco), fix "
                "or delete the files and resume with --resume; raise DATA.MAX_BAD_IMAGES only if the "
                "losses are expected."
            )
