"""Dataset validator: check a DETECTRON2_DATASETS root before hours of training find the problem.

`check_root(root, datasets)` looks at the layout Detectron2's builtin datasets and our pretraining loaders
read (README.md "Real datasets"), the lists against the files present, every json/XML, and decodes every
image with PIL (`Image.open(p).load()`, which catches truncated JPEGs). It returns `Problem`s, each naming
the path, what is wrong and the fix; `format_report` turns them into the text `check-data` prints.
"""

from __future__ import annotations

import json
import os
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.synthetic.generate import MANIFEST, PARTIAL_MARKER
from benchmarks.synthetic.vocabulary import VOC_CLASS_NAMES  # the 20 real PASCAL VOC class names

DATASETS = ("imagenet", "imagenet_val", "coco", "voc_det", "voc_seg", "cityscapes")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
VOC_SPLITS = (("VOC2007", ("trainval", "test")), ("VOC2012", ("trainval",)))
CITYSCAPES_GT = ("labelIds", "instanceIds", "labelTrainIds")


class DataCheckError(Exception):
    """The check itself was asked for something it does not know (e.g. an unknown dataset name)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: where, what, and how to fix it."""

    path: Path
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem} Fix: {self.fix}"


@dataclass(frozen=True)
class _Decode:
    """An image to decode, with an optional check of its pixel values (returns a problem text or None)."""

    path: Path
    check: Callable[[Image.Image], str | None] | None = None


class _Report:
    """Problems and images to decode, collected by the per-dataset checks."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []
        self.decode: list[_Decode] = []
        synthetic = (root / MANIFEST).exists() or (root / PARTIAL_MARKER).exists()
        self.refetch = (
            _regenerate_fix(root)
            if synthetic
            else "restore the file from the original archive (re-download or re-extract it)"
        )

    def add(self, path: Path, problem: str, fix: str | None = None) -> None:
        self.problems.append(Problem(path, problem, fix or self.refetch))

    def need_dir(self, path: Path, what: str, fix: str | None = None) -> bool:
        if path.is_dir():
            return True
        self.add(path, f"the directory is missing; expected {what}.", fix)
        return False

    def need_file(self, path: Path, what: str, fix: str | None = None) -> bool:
        if path.is_file():
            return True
        self.add(path, f"the file is missing; expected {what}.", fix)
        return False


def _regenerate_fix(root: Path) -> str:
    """How to redo a damaged synthetic root. make-data keeps a root whose manifest matches (it counts as
    complete) and refuses one with datasets but no manifest, so the whole root goes first."""
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        options = f"--profile {manifest['profile']} --seed {manifest['seed']}"
    except (OSError, ValueError, KeyError, TypeError):  # interrupted generation: no manifest yet
        options = "--profile PROFILE (smoke or tiny, the one it was made with)"
    quoted = shlex.quote(str(root))
    return (
        f"regenerate the synthetic data: delete the whole root (`rm -r {quoted}`), then run "
        f"`python -m benchmarks make-data --root {quoted} {options}`"
    )


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _check_image_folder(rep: _Report, split: str, use: str) -> set[str]:
    """imagenet/<split> as an ImageFolder (one folder of images per class); returns the class names."""
    folder = rep.root / "imagenet" / split
    get = f"the ILSVRC-2012 {split} folder (one sub-folder of JPEGs per class, e.g. n01440764/); {use}"
    if not rep.need_dir(folder, get):
        return set()
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if not classes:
        rep.add(folder, "no class sub-folders found; ImageFolder needs <split>/<class>/<image>.", None)
    for class_dir in classes:
        images = _images_in(class_dir)
        if not images:
            rep.add(class_dir, "the class folder holds no images; ImageFolder refuses empty classes.")
        rep.decode += [_Decode(p) for p in images]
    return {p.name for p in classes}


def _check_imagenet(rep: _Report) -> None:
    _check_image_folder(rep, "train", "pretraining and the supervised baseline read it")


def _check_imagenet_val(rep: _Report) -> None:
    use = "only the linear classification (table_linear, ablation_lambda's linear top-1) reads it"
    names = _check_image_folder(rep, "val", use)
    train = rep.root / "imagenet" / "train"
    train_classes = {p.name for p in train.iterdir() if p.is_dir()} if train.is_dir() else set()
    if train_classes and not names <= train_classes:
        extra = ", ".join(sorted(names - train_classes)[:5])
        rep.add(
            rep.root / "imagenet" / "val",
            f"val has classes that train lacks ({extra}); class indices would not match.",
        )


def _check_coco_json(rep: _Report, ann: Path, image_dir: Path) -> None:
    try:
        data = json.loads(ann.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        rep.add(ann, f"the annotation file is not valid JSON ({exc}).")
        return
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations")
    ):
        rep.add(
            ann, "expected a COCO instances json: an object with lists 'images', 'annotations', 'categories'."
        )
        return
    if not isinstance(data.get("categories"), list) or not data["categories"]:
        rep.add(ann, "the 'categories' list is missing or empty; Detectron2 needs the 80 COCO categories.")
    image_ids = set()
    for img in data["images"]:
        if not isinstance(img, dict) or not {"id", "file_name", "width", "height"} <= img.keys():
            rep.add(ann, f"an image entry lacks id/file_name/width/height: {str(img)[:120]}.")
            return
        image_ids.add(img["id"])
        path = image_dir / img["file_name"]
        if rep.need_file(path, f"the image listed in {ann.name}"):
            rep.decode.append(_Decode(path))
    if not image_ids:
        rep.add(ann, "the json lists no images.")
    category_ids = {c.get("id") for c in data.get("categories") or [] if isinstance(c, dict)}
    orphans = [a.get("id") for a in data["annotations"] if a.get("image_id") not in image_ids]
    if orphans:
        rep.add(ann, f"{len(orphans)} annotations refer to image ids not in 'images' (first: {orphans[:3]}).")
    unknown = [a.get("id") for a in data["annotations"] if a.get("category_id") not in category_ids]
    if unknown:
        rep.add(
            ann, f"{len(unknown)} annotations have a category_id not in 'categories' (first: {unknown[:3]})."
        )


def _check_coco(rep: _Report) -> None:
    base = rep.root / "coco"
    for split in ("train2017", "val2017"):
        image_dir = base / split
        ann = base / "annotations" / f"instances_{split}.json"
        has_dir = rep.need_dir(image_dir, f"the COCO {split} images (unzip {split}.zip into coco/)")
        has_ann = rep.need_file(
            ann, "the COCO instances json (unzip annotations_trainval2017.zip into coco/)"
        )
        if has_dir and has_ann:
            _check_coco_json(rep, ann, image_dir)


def _read_list(rep: _Report, path: Path, what: str, fix: str | None = None) -> list[str]:
    """Ids of an ImageSets list (one per line); problems for a missing, empty or one-line list."""
    if not rep.need_file(path, what, fix):
        return []
    ids = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        rep.add(path, "the list is empty.")
    elif len(ids) == 1:
        rep.add(
            path, "the list has a single id; Detectron2's np.loadtxt reading then yields a scalar and fails."
        )
    return ids


def _check_voc_xml(rep: _Report, path: Path) -> None:
    try:
        tree = ET.parse(path)
        for field in ("size/width", "size/height"):
            int(tree.findtext(field))
        for obj in tree.findall("object"):
            name = obj.findtext("name")
            if name not in VOC_CLASS_NAMES:
                rep.add(path, f"object name {name!r} is not one of the 20 VOC classes.")
            for field in ("difficult", "bndbox/xmin", "bndbox/ymin", "bndbox/xmax", "bndbox/ymax"):
                int(obj.findtext(field))
    except ET.ParseError as exc:
        rep.add(path, f"the annotation XML does not parse ({exc}).")
    except (TypeError, ValueError):
        rep.add(path, "the annotation XML lacks size/width, size/height, difficult or integer bndbox fields.")


def _check_voc_det(rep: _Report) -> None:
    for year, splits in VOC_SPLITS:
        voc = rep.root / year
        if not rep.need_dir(voc, f"the VOCdevkit/{year} folder (Annotations, JPEGImages, ImageSets)"):
            continue
        seen: set[str] = set()
        for split in splits:
            fix = None
            if split == "test":
                fix = (
                    "extract VOCtest_06-Nov-2007.tar into the same VOCdevkit, so that VOC2007/ImageSets/Main/"
                    "test.txt and the test images and XMLs sit beside trainval."
                )
            ids = _read_list(
                rep, voc / "ImageSets" / "Main" / f"{split}.txt", f"the {year} {split} list", fix
            )
            for image_id in ids:
                if image_id in seen:
                    continue
                seen.add(image_id)
                jpeg = voc / "JPEGImages" / f"{image_id}.jpg"
                xml = voc / "Annotations" / f"{image_id}.xml"
                if rep.need_file(jpeg, f"the image of id {image_id} in ImageSets/Main/{split}.txt"):
                    rep.decode.append(_Decode(jpeg))
                if rep.need_file(xml, f"the annotation of id {image_id} in ImageSets/Main/{split}.txt"):
                    _check_voc_xml(rep, xml)


def _voc_mask_values(img: Image.Image) -> str | None:
    if img.mode not in ("L", "P"):
        return f"mode {img.mode!r}: expected an index PNG ('L' or 'P'), not a colour image."
    values = np.unique(np.asarray(img))
    bad = values[(values > 20) & (values != 255)]
    return f"pixel values {bad[:5].tolist()} are not class indices 0..20 or 255." if bad.size else None


def _check_voc_seg(rep: _Report) -> None:
    voc = rep.root / "VOC2012"
    if not rep.need_dir(voc, "the VOCdevkit/VOC2012 folder with SegmentationClass and SegmentationClassAug"):
        return
    lists = voc / "ImageSets" / "Segmentation"
    sbd_fix = (
        "build train_aug from SBD (benchmark_RELEASE): convert its cls/*.mat to index PNGs in "
        "VOC2012/SegmentationClassAug and write the 10,582 ids of VOC2012 seg train + SBD train/val "
        "minus VOC2012 seg val to ImageSets/Segmentation/train_aug.txt."
    )
    train_aug = _read_list(rep, lists / "train_aug.txt", "the SBD-augmented train list", sbd_fix)
    val = _read_list(rep, lists / "val.txt", "the VOC2012 segmentation val list")
    overlap = sorted(set(train_aug) & set(val))
    if overlap:
        rep.add(
            lists / "train_aug.txt",
            f"{len(overlap)} ids are also in val.txt (first: {overlap[:3]}).",
            sbd_fix,
        )
    for ids, mask_dir, fix in (
        (train_aug, "SegmentationClassAug", sbd_fix),
        (val, "SegmentationClass", None),
    ):
        for image_id in ids:
            jpeg = voc / "JPEGImages" / f"{image_id}.jpg"
            mask = voc / mask_dir / f"{image_id}.png"
            if rep.need_file(jpeg, f"the image of segmentation id {image_id}"):
                rep.decode.append(_Decode(jpeg))
            if rep.need_file(mask, f"the {mask_dir} mask of id {image_id}", fix):
                rep.decode.append(_Decode(mask, _voc_mask_values))


def _train_id_values(img: Image.Image) -> str | None:
    values = np.unique(np.asarray(img))
    bad = values[(values > 18) & (values != 255)]
    return f"pixel values {bad[:5].tolist()} are not train ids 0..18 or 255." if bad.size else None


def _check_cityscapes(rep: _Report) -> None:
    base = rep.root / "cityscapes"
    train_id_fix = (
        f"run cityscapesscripts' createTrainIdLabelImgs: `CITYSCAPES_DATASET={base} "
        f"python -m cityscapesscripts.preparation.createTrainIdLabelImgs`."
    )
    for split in ("train", "val"):
        image_dir, gt_dir = base / "leftImg8bit" / split, base / "gtFine" / split
        has_images = rep.need_dir(image_dir, "leftImg8bit_trainvaltest.zip extracted into cityscapes/")
        if not (rep.need_dir(gt_dir, "gtFine_trainvaltest.zip extracted into cityscapes/") and has_images):
            continue
        images = [p for city in sorted(image_dir.iterdir()) if city.is_dir() for p in _images_in(city)]
        if not images:
            rep.add(image_dir, "no <city>/*_leftImg8bit.png images found.")
        for image in images:
            if not image.name.endswith("_leftImg8bit.png"):
                rep.add(image, "the name does not end with _leftImg8bit.png, which Detectron2 asserts.")
                continue
            rep.decode.append(_Decode(image))
            stem = gt_dir / image.parent.name / image.name[: -len("leftImg8bit.png")]
            polygons = Path(f"{stem}gtFine_polygons.json")
            if rep.need_file(polygons, "the gtFine polygons json"):
                try:
                    data = json.loads(polygons.read_text(encoding="utf-8"))
                    if not {"imgHeight", "imgWidth", "objects"} <= set(data):
                        rep.add(polygons, "expected keys imgHeight, imgWidth and objects.")
                except (OSError, UnicodeDecodeError, ValueError) as exc:
                    rep.add(polygons, f"the polygons json does not parse ({exc}).")
            for kind in CITYSCAPES_GT:
                gt = Path(f"{stem}gtFine_{kind}.png")
                fix = train_id_fix if kind == "labelTrainIds" else None
                if rep.need_file(gt, f"the gtFine {kind} image", fix):
                    rep.decode.append(_Decode(gt, _train_id_values if kind == "labelTrainIds" else None))


_CHECKS = {
    "imagenet": _check_imagenet,
    "imagenet_val": _check_imagenet_val,
    "coco": _check_coco,
    "voc_det": _check_voc_det,
    "voc_seg": _check_voc_seg,
    "cityscapes": _check_cityscapes,
}


def _decode_one(item: _Decode) -> str | None:
    try:
        with Image.open(item.path) as img:
            img.load()
            return item.check(img) if item.check else None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"the image cannot be decoded ({exc})."


def check_root(
    root: Path, datasets: Iterable[str] | None = None, max_decode: int | None = None
) -> list[Problem]:
    """Problems found in the datasets under `root` (an empty list means ready to train).

    `datasets`: names among DATASETS (None = all of them; imagenet_val, which only the linear
    classification reads, when imagenet/val exists). `max_decode`: decode at most this many images per
    dataset, evenly spread (None = all; the full real ImageNet takes a while).
    """
    root = Path(root)
    if datasets is None:
        datasets = [n for n in DATASETS if n != "imagenet_val" or (root / "imagenet" / "val").exists()]
    names = tuple(datasets)
    unknown = [n for n in names if n not in _CHECKS]
    if unknown:
        raise DataCheckError(f"unknown dataset name(s) {unknown}; expected some of {list(DATASETS)}.")
    if not root.is_dir():
        return [
            Problem(
                root,
                "the dataset root does not exist.",
                "point DETECTRON2_DATASETS (or --root) at the folder holding imagenet/, coco/, VOC2007/, "
                "VOC2012/ and cityscapes/, or create it with `python -m benchmarks make-data --root DIR`.",
            )
        ]
    problems: list[Problem] = []
    for name in names:
        rep = _Report(root)
        _CHECKS[name](rep)
        todo = rep.decode
        if max_decode is not None and len(todo) > max_decode:
            todo = [todo[i] for i in np.linspace(0, len(todo) - 1, max_decode).astype(int)]
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for item, error in zip(todo, pool.map(_decode_one, todo)):
                if error:
                    rep.add(item.path, error)
        problems += rep.problems
    return problems


def format_report(problems: list[Problem], per_kind: int = 10) -> str:
    """Readable report: one paragraph per problem, at most `per_kind` of the same problem and fix shown."""
    if not problems:
        return "No problems found: every checked dataset is complete and readable."
    groups: dict[tuple[str, str], list[Problem]] = {}
    for p in problems:
        key = (p.problem if not p.problem.startswith("the file is missing") else "missing", p.fix)
        groups.setdefault(key, []).append(p)
    lines = [f"{len(problems)} problem(s) found:", ""]
    for group in groups.values():
        lines += [str(p) + "\n" for p in group[:per_kind]]
        if len(group) > per_kind:
            lines.append(f"... and {len(group) - per_kind} more like the above (same fix).\n")
    return "\n".join(lines).rstrip() + "\n"
