"""Dataset mappers that name an unreadable file with its fix, and in training can skip it instead.

Detectron2's mappers fail on a truncated or undecodable image with PIL's message, which for a truncated
JPEG does not even say which file. Every mapper of `train_net` is wrapped: the error names the image (and
label), what was expected and the fix. With `TRANSFER.SKIP_BAD_IMAGES True` a training image that cannot
be read is recorded in `<OUTPUT_DIR>/bad_images.txt` (transfer/bad_images.py) and the mapper returns None,
on which Detectron2's MapDataset draws another image; more than `TRANSFER.MAX_BAD_IMAGES` distinct files
stop the run. Evaluation never skips: a test set with a file missing would give a different metric.
"""

from pathlib import Path

from detectron2.data.detection_utils import SizeMismatchError
from detectron2.utils import comm

from transfer.bad_images import BadImageLog, bad_images_file
from transfer.errors import TransferError

# PIL's decode errors (UnidentifiedImageError and "image file is truncated" are OSErrors, a broken PNG
# header a SyntaxError), a missing file, and an image whose size contradicts its annotation.
UNREADABLE = (OSError, SyntaxError, SizeMismatchError)


def too_many_bad_images(path: Path, count: int, limit: int) -> TransferError:
    return TransferError(
        f"{count} training images could not be read (listed in {path}), more than TRANSFER.MAX_BAD_IMAGES "
        f"{limit}: the dataset looks broken, not just dirty. Check it with `python -m benchmarks check-data "
        "--root $DETECTRON2_DATASETS`, fix or delete the files and resume with --resume; raise "
        "TRANSFER.MAX_BAD_IMAGES only if the losses are expected."
    )


class GuardedMapper:
    """Calls `mapper` on a dataset dict; an unreadable sample raises TransferError naming its files, or,
    with a `bad_images` log (training with TRANSFER.SKIP_BAD_IMAGES), is recorded and mapped to None."""

    def __init__(self, mapper, bad_images: BadImageLog | None = None):
        self.mapper = mapper
        self.bad_images = bad_images

    def __call__(self, dataset_dict: dict) -> dict | None:
        try:
            return self.mapper(dataset_dict)
        except UNREADABLE as exc:
            image, label = dataset_dict.get("file_name"), dataset_dict.get("sem_seg_file_name")
            reason = f"{type(exc).__name__}: {exc}"
            if self.bad_images is None:
                raise TransferError(
                    f"cannot read image {image}{f' or its label {label}' if label else ''}: {reason}. "
                    "Expected a decodable image whose size matches its annotation. Run `python -m "
                    "benchmarks check-data --root $DETECTRON2_DATASETS` to list every such file and "
                    "replace or delete it; a training run can skip unreadable images with "
                    "TRANSFER.SKIP_BAD_IMAGES True."
                ) from exc
            self.bad_images.record(image, reason + (f" (image or its label {label})" if label else ""))
            return None


def guard_mapper(cfg, mapper, is_train: bool) -> GuardedMapper:
    """`mapper` wrapped for `train_net`: skipping (and logging) only in training with SKIP_BAD_IMAGES."""
    if not (is_train and cfg.TRANSFER.SKIP_BAD_IMAGES):
        return GuardedMapper(mapper)
    path = bad_images_file(Path(cfg.OUTPUT_DIR), comm.get_rank(), comm.get_world_size())
    return GuardedMapper(mapper, BadImageLog(path, cfg.TRANSFER.MAX_BAD_IMAGES, too_many_bad_images))
