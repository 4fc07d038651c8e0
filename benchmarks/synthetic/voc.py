"""Synthetic PASCAL VOC 2007/2012: detection XML, ImageSets lists and VOC2012 segmentation masks.

Formats as in the real devkit: `Annotations/<id>.xml` (folder, filename, size, segmented, objects with
name, pose, truncated, difficult and a 1-based inclusive bndbox of the visible pixels),
`JPEGImages/<id>.jpg`, `ImageSets/Main/{train,val,trainval,test}.txt` (VOC2012: no test).
VOC2012 also gets `SegmentationClass/<id>.png` (palette "P", index 0..20, 255 on a 2-px band around every
object like the real masks), `SegmentationClassAug/<id>.png` ("L" index images as the usual SBD
conversion writes them; SBD-only images carry no 255 band) and `ImageSets/Segmentation/{train,val,
trainval,train_aug}.txt`, train_aug = seg train + extra "SBD" images, disjoint from val.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.synthetic.files import image_rng, save_jpeg, save_png, write_lines, write_text
from benchmarks.synthetic.profiles import SyntheticProfile
from benchmarks.synthetic.scenes import Scene, random_scene
from benchmarks.synthetic.vocabulary import VOC_CLASS_NAMES, VOCABULARY

IGNORE_INDEX = 255


def voc_palette() -> list[int]:
    """The 256-entry PASCAL VOC colour map (bits of the index spread over R, G, B), flat [r, g, b, ...]."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


def class_mask(scene: Scene, with_border: bool) -> np.ndarray:
    """(H, W) uint8: VOC index (1..20) of the visible object per pixel, 0 background, 255 boundary band."""
    lookup = np.array([0] + [inst.class_id + 1 for inst in scene.instances], dtype=np.uint8)
    labels = lookup[scene.instance_map]
    if with_border:
        h, w = scene.instance_map.shape
        padded = np.pad(scene.instance_map, 1, mode="edge")
        edge = np.zeros((h, w), dtype=bool)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                edge |= padded[dy : dy + h, dx : dx + w] != scene.instance_map
        labels[edge] = IGNORE_INDEX
    return labels


def annotation_xml(scene: Scene, folder: str, image_id: str, segmented: bool) -> str:
    """The VOC XML of a scene; objects hidden below 10 pixels are left out.

    `difficult` = 1 for objects that are small (short side < 12 px) or partly hidden (< 85% visible),
    about 5% of all objects, as in VOC07.
    """
    height, width = scene.image.shape[:2]
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "densebench synthetic VOC"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = str(int(segmented))
    for k, inst in enumerate(scene.instances):
        ys, xs = np.nonzero(scene.instance_map == k + 1)
        if xs.size < 10:
            continue
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
        difficult = min(x1 - x0, y1 - y0) + 1 < 12 or scene.visible_fraction(k) < 0.85
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = VOCABULARY[inst.class_id].voc_name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = str(int(inst.truncated))
        ET.SubElement(obj, "difficult").text = str(int(difficult))
        box = ET.SubElement(obj, "bndbox")
        for tag, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1 + 1), ("ymax", y1 + 1)):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def _write_image(voc_dir: Path, image_id: str, scene: Scene, segmented: bool) -> None:
    """JPEG + Annotations XML of one image."""
    save_jpeg(voc_dir / "JPEGImages" / f"{image_id}.jpg", scene.image)
    xml = annotation_xml(scene, voc_dir.name, image_id, segmented)
    write_text(voc_dir / "Annotations" / f"{image_id}.xml", xml)


def _scene(seed: int, year: str, index: int, profile: SyntheticProfile) -> Scene:
    """A VOC-like scene: 1-4 objects (real VOC averages 2.4 per image), larger than COCO's (radii 0.3-0.9
    of half the short side instead of 0.15-0.6): VOC objects are big, and with COCO-sized ones the
    segmentation masks are ~88% background, which a 80-iteration FCN never gets past."""
    rng = image_rng(seed, year, 0, index)
    return random_scene(rng, profile.scene_sizes, (1, 4), len(VOC_CLASS_NAMES), radii=(0.3, 0.9))


def write_voc2007(root: Path, profile: SyntheticProfile, seed: int) -> dict[str, int]:
    """VOC2007 with trainval (split in half into train/val) and test; returns images per list."""
    voc_dir = root / "VOC2007"
    n_trainval, n_test = profile.voc2007_trainval, profile.voc2007_test
    ids = [f"{i + 1:06d}" for i in range(n_trainval + n_test)]
    for index, image_id in enumerate(ids):
        _write_image(voc_dir, image_id, _scene(seed, "voc2007", index, profile), segmented=False)
    trainval, test = ids[:n_trainval], ids[n_trainval:]
    lists = {"train": trainval[0::2], "val": trainval[1::2], "trainval": trainval, "test": test}
    for name, members in lists.items():
        write_lines(voc_dir / "ImageSets" / "Main" / f"{name}.txt", members)
    return {name: len(members) for name, members in lists.items()}


def write_voc2012(root: Path, profile: SyntheticProfile, seed: int) -> dict[str, int]:
    """VOC2012 detection (trainval) and segmentation (train, val, train_aug); returns images per list."""
    voc_dir = root / "VOC2012"
    groups = (
        ("seg_train", profile.voc2012_seg_train),
        ("seg_val", profile.voc2012_seg_val),
        ("sbd", profile.voc2012_sbd_extra),
        ("det_only", profile.voc2012_det_only),
    )
    members: dict[str, list[str]] = {}
    index = 0
    palette = voc_palette()
    for group, count in groups:
        members[group] = []
        for _ in range(count):
            image_id = f"2012_{index + 1:06d}"
            scene = _scene(seed, "voc2012", index, profile)
            segmented = group in ("seg_train", "seg_val")
            _write_image(voc_dir, image_id, scene, segmented)
            if segmented:
                labels = class_mask(scene, with_border=True)
                indexed = Image.frombytes("P", labels.shape[::-1], labels.tobytes())
                indexed.putpalette(palette)
                save_png(voc_dir / "SegmentationClass" / f"{image_id}.png", indexed)
            if group != "det_only":
                aug = Image.fromarray(class_mask(scene, with_border=segmented))
                save_png(voc_dir / "SegmentationClassAug" / f"{image_id}.png", aug)
            members[group].append(image_id)
            index += 1
    trainval = [i for group, _ in groups for i in members[group]]
    main = {"train": trainval[0::2], "val": trainval[1::2], "trainval": trainval}
    seg = {
        "train": members["seg_train"],
        "val": members["seg_val"],
        "trainval": members["seg_train"] + members["seg_val"],
        "train_aug": members["seg_train"] + members["sbd"],
    }
    for name, ids in main.items():
        write_lines(voc_dir / "ImageSets" / "Main" / f"{name}.txt", ids)
    for name, ids in seg.items():
        write_lines(voc_dir / "ImageSets" / "Segmentation" / f"{name}.txt", ids)
    counts = {f"main_{name}": len(ids) for name, ids in main.items()}
    counts.update({f"seg_{name}": len(ids) for name, ids in seg.items()})
    return counts
