"""ImageFolder splits and the linear-classification transforms (MoCo `main_lincls.py` recipe).

Train: RandomResizedCrop(IMAGE_SIZE) + horizontal flip. Eval (val split, and the kNN memory bank built
from the train split): Resize(256) + CenterCrop(224) at paper scale, the same 256/224 ratio otherwise.
Images are decoded by pretrain.data.load_rgb, which names an unreadable file instead of skipping it.
"""

from pathlib import Path

from torchvision import transforms as T
from torchvision.datasets.folder import IMG_EXTENSIONS

from pretrain.config import dataset_root
from pretrain.data import ImageListDataset, supervised_transform
from pretrain.errors import PretrainError

from .config import resize_size


def eval_transform(cfg) -> T.Compose:
    return T.Compose(
        [
            T.Resize(resize_size(cfg)),
            T.CenterCrop(cfg.DATA.IMAGE_SIZE),
            T.ToTensor(),
            T.Normalize(cfg.DATA.MEAN, cfg.DATA.STD),
        ]
    )


def split_dir(cfg, split: str) -> Path:
    return dataset_root(cfg) / cfg.DATA.DATASET / split


def list_split(folder: Path, classes: list[str] | None = None) -> tuple[list[tuple[Path, int]], list[str]]:
    """(path, label) pairs of an ImageFolder split and its class names (sorted folder names).

    With `classes` (those of the train split) labels follow that list, and a class folder outside it is
    an error: the val labels must mean the same classes as the train labels.
    """
    found = sorted(d.name for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []
    classes = classes if classes is not None else found
    extra = sorted(set(found) - set(classes))
    if extra:
        raise PretrainError(
            f"{folder} has class folders that the train split lacks: {', '.join(extra[:5])}"
            f"{' ...' if len(extra) > 5 else ''}. Both splits must use the same class folder names "
            "(for ImageNet val, sort the images into class folders with the usual valprep script)."
        )
    samples = [
        (p, label)
        for label, name in enumerate(classes)
        if (folder / name).is_dir()
        for p in sorted((folder / name).rglob("*"))
        if p.suffix.lower() in IMG_EXTENSIONS
    ]
    if not samples:
        raise PretrainError(
            f"dataset split {folder} is missing or has no images in class sub-folders. Expected the "
            "ImageFolder layout <root>/<DATA.DATASET>/<split>/<class>/*.jpg with the root given by DATA.ROOT "
            "or $DETECTRON2_DATASETS. Point DATA.ROOT at the right folder, or create synthetic data with "
            "`python -m benchmarks make-data --profile tiny`."
        )
    return samples, classes


def build_datasets(cfg) -> dict[str, ImageListDataset]:
    """`train` (augmented, for the classifier), `bank` (train split, eval transform, for kNN), `val`."""
    train_samples, classes = list_split(split_dir(cfg, cfg.DATA.TRAIN_SPLIT))
    val_samples, _ = list_split(split_dir(cfg, cfg.DATA.VAL_SPLIT), classes)
    return {
        "train": ImageListDataset(train_samples, supervised_transform(cfg), classes),
        "bank": ImageListDataset(train_samples, eval_transform(cfg), classes),
        "val": ImageListDataset(val_samples, eval_transform(cfg), classes),
    }
