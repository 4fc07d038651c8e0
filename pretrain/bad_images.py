"""Opt-in tolerance of unreadable images during pretraining (`DATA.SKIP_BAD_IMAGES True`).

A self-downloaded ImageNet or a folder of user images can hold a few truncated or mislabelled files; a
run of several days should neither die at one of them nor silently train on fewer images. With the option
on, an image that fails to decode is replaced by the next readable image of the list (the same one every
epoch and after a resume), logged, and appended to `<OUTPUT_DIR>/bad_images.txt` (transfer/bad_images.py);
more than `DATA.MAX_BAD_IMAGES` distinct failures stop the run with a PretrainError, because at that point
the dataset is broken rather than dirty. Off (the default), the first unreadable image stops the run with
its path. `python -m benchmarks check-data` finds such files before any compute is spent.
"""

from pathlib import Path

from transfer.bad_images import BadImageLog

from .errors import PretrainError


def too_many_bad_images(path: Path, count: int, limit: int) -> PretrainError:
    return PretrainError(
        f"{count} images could not be decoded (listed in {path}), more than DATA.MAX_BAD_IMAGES {limit}: "
        "the dataset looks broken, not just dirty. Check it with `python -m benchmarks check-data --root "
        "<root> --datasets imagenet` (or coco), fix or delete the files and resume with --resume; raise "
        "DATA.MAX_BAD_IMAGES only if the losses are expected."
    )


def pretrain_bad_image_log(path: Path, limit: int) -> BadImageLog:
    """The skipped-image log of a pretraining run (DATA.MAX_BAD_IMAGES = `limit`)."""
    return BadImageLog(path, limit, too_many_bad_images)
