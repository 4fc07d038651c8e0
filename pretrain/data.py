"""Datasets and augmentations for pretraining.

Two-crop MoCo-v2 augmentation (Chen et al., arXiv 2003.04297, Sec. 3; the DenseCL paper uses the same):
each view independently gets RandomResizedCrop(scale 0.2-1), ColorJitter(0.4, 0.4, 0.4, 0.1) w.p. 0.8,
grayscale w.p. 0.2, Gaussian blur sigma U(0.1, 2) w.p. 0.5, horizontal flip, mean/std normalisation.
The blur's sigma is the recipe's for 224 px crops and scales with the crop size (like its kernel), so a
scaled run blurs as much relative to its crop as the recipe does.
Each view can also report where it came from (crop box in image pixels and flip flag), which DenseCL's
geometric-correspondence ablation (MODEL.DENSECL.MATCHING geometry) needs to pair grid cells.
"""

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Sampler
from torchvision import transforms as T
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import functional as TF

from transfer.bad_images import BadImageLog

from .config import dataset_root
from .errors import PretrainError

LAYOUTS = {
    "imagenet": "imagenet/train/<class>/*.jpg (ImageFolder: one sub-folder per class)",
    "coco": "coco/train2017/*.jpg (every image is used, annotations are not read)",
}


def load_rgb(path: str | Path) -> Image.Image:
    """Decode an image to RGB; an unreadable file raises PretrainError naming it (never a silent skip)."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise PretrainError(
            f"cannot read image {path}: {e}. Expected a decodable JPEG/PNG; replace or delete the file "
            "(or regenerate the dataset) and restart (training resumes with --resume)."
        ) from e


def blur_kernel_size(image_size: int, fraction: float) -> int:
    """Odd Gaussian kernel of about `fraction` of the crop size (23 for 224 px at 0.1), at least 3."""
    k = max(3, int(image_size * fraction))
    return k if k % 2 else k + 1


def blur_sigma_range(image_size: int, sigma: list[float], reference_size: int) -> tuple[float, float]:
    """The recipe's blur sigma range (given for `reference_size` px crops) scaled to `image_size` px crops.

    MoCo-v2 blurs 224 px crops with sigma U(0.1, 2.0); a 64 px crop of the same content needs 64 / 224 of
    that to lose the same detail (sigma 2 would smear a 64 px crop as much as sigma 7 a 224 px one).
    `reference_size` 0 keeps the range as given.
    """
    if len(sigma) != 2 or not 0 < sigma[0] <= sigma[1]:
        raise PretrainError(
            f"DATA.BLUR_SIGMA {list(sigma)}: expected [min, max] with 0 < min <= max (MoCo-v2: [0.1, 2.0])"
        )
    scale = image_size / reference_size if reference_size > 0 else 1.0
    return sigma[0] * scale, sigma[1] * scale


VIEW_PARAMS = ("x0", "y0", "x1", "y1", "flipped")  # one view's params: crop box in image pixels, flip flag


class MoCoV2View:
    """One randomly augmented MoCo-v2 view; `sample` also returns the crop box and flip flag it drew.

    The steps and random draws are exactly those of the torchvision pipeline RandomResizedCrop ->
    RandomApply(ColorJitter) -> RandomGrayscale -> RandomApply(GaussianBlur) -> RandomHorizontalFlip ->
    ToTensor -> Normalize (the crop is sampled by T.RandomResizedCrop.get_params), so a seed gives the
    same view as that pipeline. The box (x0, y0, x1, y1) is in continuous pixel coordinates of the
    original image: view coordinate u in [0, 1] (before the flip) shows image x = x0 + u * (x1 - x0).
    """

    def __init__(
        self,
        size: int,
        blur_kernel: int,
        blur_sigma: tuple[float, float],
        mean: list[float],
        std: list[float],
    ):
        self.crop = T.RandomResizedCrop(size, scale=(0.2, 1.0))
        self.photometric = T.Compose(
            [
                T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                T.RandomGrayscale(p=0.2),
                T.RandomApply([T.GaussianBlur(blur_kernel, sigma=blur_sigma)], p=0.5),
            ]
        )
        self.flip_p = 0.5
        self.to_tensor = T.Compose([T.ToTensor(), T.Normalize(mean, std)])

    def sample(self, img: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """(view (3, S, S), params (5,) = VIEW_PARAMS as float32)."""
        c = self.crop
        top, left, height, width = c.get_params(img, c.scale, c.ratio)
        view = TF.resized_crop(img, top, left, height, width, c.size, c.interpolation, antialias=c.antialias)
        view = self.photometric(view)
        flipped = bool(torch.rand(1) < self.flip_p)
        if flipped:
            view = TF.hflip(view)
        params = torch.tensor([left, top, left + width, top + height, float(flipped)], dtype=torch.float32)
        return self.to_tensor(view), params

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.sample(img)[0]


def mocov2_view_transform(cfg) -> MoCoV2View:
    """One randomly augmented view (the MoCo-v2 recipe), as a normalised (3, S, S) tensor."""
    size = cfg.DATA.IMAGE_SIZE
    return MoCoV2View(
        size,
        blur_kernel_size(size, cfg.DATA.BLUR_KERNEL_FRACTION),
        blur_sigma_range(size, cfg.DATA.BLUR_SIGMA, cfg.DATA.BLUR_REFERENCE_SIZE),
        cfg.DATA.MEAN,
        cfg.DATA.STD,
    )


def supervised_transform(cfg) -> T.Compose:
    """The torchvision ImageNet classification recipe: RandomResizedCrop + horizontal flip."""
    return T.Compose(
        [
            T.RandomResizedCrop(cfg.DATA.IMAGE_SIZE),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(cfg.DATA.MEAN, cfg.DATA.STD),
        ]
    )


class TwoCropsTransform:
    """Two independent draws of the same view transform: (query view, key view).

    With `with_params` (needs a view transform with `sample`, e.g. MoCoV2View) it returns
    (query view, key view, view_params) where view_params (2, 5) holds VIEW_PARAMS of the query (row 0)
    and the key (row 1); the default collate stacks them to (N, 2, 5).
    """

    def __init__(self, view_transform, with_params: bool = False):
        self.view_transform = view_transform
        self.with_params = with_params

    def __call__(self, img):
        if not self.with_params:
            return self.view_transform(img), self.view_transform(img)
        view_q, params_q = self.view_transform.sample(img)
        view_k, params_k = self.view_transform.sample(img)
        return view_q, view_k, torch.stack([params_q, params_k])  # (3, S, S), (3, S, S), (2, 5)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMG_EXTENSIONS


class ImageListDataset(Dataset):
    """A list of (path, label) decoded with `load_rgb` and passed through `transform`.

    An unreadable image raises PretrainError, unless `bad_images` is given: then it is recorded there
    and the next readable sample of the list takes its place (label included).
    """

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        transform,
        classes: list[str] | None = None,
        bad_images: BadImageLog | None = None,
    ):
        self.samples = samples
        self.transform = transform
        self.classes = classes or []
        self.bad_images = bad_images

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, index: int) -> tuple[Image.Image, int]:
        """The image and label at `index`, or at the first readable index after it (see the class)."""
        for offset in range(len(self.samples)):
            path, label = self.samples[(index + offset) % len(self.samples)]
            try:
                return load_rgb(path), label
            except PretrainError as e:
                if self.bad_images is None:
                    raise
                self.bad_images.record(path, str(e.__cause__))
        raise PretrainError(f"none of the {len(self.samples)} images of the dataset can be decoded.")

    def __getitem__(self, item: int | tuple[int, int]):
        """`item` is an index, or (index, augmentation seed) from ResumableDistributedSampler."""
        index, seed = item if isinstance(item, tuple) else (item, None)
        img, label = self._load(index)
        if seed is None:
            out = self.transform(img)
        else:
            with torch.random.fork_rng(devices=[]):
                # Only the CPU generator, which the transforms draw from: torch.manual_seed would also queue
                # seeding calls for CUDA, XPU and MTIA, ~0.7 ms per item (~20 ms per batch of 32).
                torch.default_generator.manual_seed(seed)
                out = self.transform(img)
        return (*out, label) if isinstance(out, tuple) else (out, label)


def _missing(path: Path, dataset: str) -> PretrainError:
    return PretrainError(
        f"dataset directory {path} is missing or has no images. DATA.DATASET {dataset!r} expects "
        f"<root>/{LAYOUTS[dataset]} under the root given by DATA.ROOT or $DETECTRON2_DATASETS. "
        "Point DATA.ROOT at the right folder, or create synthetic data with "
        "`python -m benchmarks make-data --profile tiny`."
    )


def list_samples(cfg) -> tuple[list[tuple[Path, int]], list[str]]:
    """(path, label) pairs and class names for DATA.DATASET; label -1 for the unlabelled COCO images."""
    dataset = cfg.DATA.DATASET
    if dataset not in LAYOUTS:
        raise PretrainError(f"DATA.DATASET {dataset!r} is unknown; expected one of {', '.join(LAYOUTS)}.")
    root = dataset_root(cfg)
    if dataset == "imagenet":
        folder = root / "imagenet" / "train"
        classes = sorted(d.name for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []
        samples = [
            (p, label)
            for label, name in enumerate(classes)
            for p in sorted((folder / name).rglob("*"))
            if _is_image(p)
        ]
    else:
        folder = root / "coco" / "train2017"
        classes = []
        samples = [(p, -1) for p in sorted(folder.iterdir()) if _is_image(p)] if folder.is_dir() else []
    if not samples:
        raise _missing(folder, dataset)
    return samples, classes


def returns_view_params(cfg) -> bool:
    """True when the two-crop items carry view_params: DenseCL with MODEL.DENSECL.MATCHING geometry."""
    return cfg.MODEL.METHOD == "densecl" and cfg.MODEL.DENSECL.MATCHING == "geometry"


def build_dataset(cfg, bad_images: BadImageLog | None = None) -> ImageListDataset:
    """Two-crop dataset for densecl/mocov2, (image, label) items for supervised.

    Two-crop items are (view_q, view_k, label), or (view_q, view_k, view_params (2, 5), label) when
    `returns_view_params(cfg)`. `bad_images`: where unreadable images are recorded and skipped (None:
    they raise).
    """
    samples, classes = list_samples(cfg)
    if cfg.MODEL.METHOD == "supervised":
        if cfg.DATA.DATASET != "imagenet":
            raise PretrainError(
                f"MODEL.METHOD supervised needs labels, but DATA.DATASET is {cfg.DATA.DATASET!r}; "
                "set DATA.DATASET imagenet (class folders under <root>/imagenet/train)."
            )
        return ImageListDataset(samples, supervised_transform(cfg), classes, bad_images)
    two_crops = TwoCropsTransform(mocov2_view_transform(cfg), with_params=returns_view_params(cfg))
    return ImageListDataset(samples, two_crops, classes, bad_images)


class ResumableDistributedSampler(Sampler[tuple[int, int]]):
    """A seeded permutation per epoch, cut to whole global batches and split across processes.

    Process r takes positions r, r + W, ... of the permutation, so every global batch holds
    `batch_size` distinct images. `start_batch` skips batches already trained on before a resume.
    Yields (index, augmentation seed): the random views of an image depend only on (SEED, epoch,
    index), not on worker count or resume point, so a resumed run sees exactly the same data.
    """

    def __init__(self, length: int, batch_per_process: int, rank: int, world_size: int, seed: int):
        self.length, self.batch_per_process = length, batch_per_process
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.batches_per_epoch = length // (batch_per_process * world_size)
        self.epoch, self.start_batch = 0, 0

    def set_position(self, epoch: int, start_batch: int) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)  # seed s+1 != epoch 1 of s
        perm = torch.randperm(self.length, generator=g)[
            : self.batches_per_epoch * self.batch_per_process * self.world_size
        ]
        mine = perm[self.rank :: self.world_size][self.start_batch * self.batch_per_process :]
        epoch_seed = (self.seed * 1_000_003 + self.epoch) * 1_000_000_007
        return iter([(i, (epoch_seed + i) % 2**63) for i in mine.tolist()])

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_per_process
