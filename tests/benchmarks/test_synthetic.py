"""The synthetic datasets load with the real loaders (pycocotools, Detectron2, cityscapesscripts), are
deterministic, and have class-dependent appearance."""

from __future__ import annotations

import hashlib
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.synthetic import PROFILES, VOC_CLASS_NAMES, SyntheticDataError, generate
from benchmarks.synthetic.imagenet import render_imagenet_image
from benchmarks.synthetic.voc import voc_palette

VOC_AS_COCO = {
    "airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "dining table", "dog", "horse", "motorcycle", "person", "potted plant", "sheep", "couch", "train", "tv",
}  # fmt: skip


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_manifest_counts_match_profile(synthetic_root):
    manifest = json.loads((synthetic_root / "SYNTHETIC.json").read_text())
    smoke = PROFILES["smoke"]
    assert (manifest["profile"], manifest["seed"]) == ("smoke", 0)
    assert manifest["counts"]["coco"] == {"train2017": smoke.coco_train, "val2017": smoke.coco_val}
    assert len(list((synthetic_root / "coco" / "train2017").glob("*.jpg"))) == smoke.coco_train
    n_train = smoke.imagenet_classes * smoke.imagenet_train_per_class
    assert len(list((synthetic_root / "imagenet" / "train").glob("*/*.jpg"))) == n_train
    assert not (synthetic_root / "SYNTHETIC.partial").exists()


def test_coco_loads_with_pycocotools_and_detectron2_builtin_metadata(synthetic_root):
    from detectron2.data.datasets import load_coco_json
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
    from pycocotools.coco import COCO

    thing_names = [c["name"] for c in COCO_CATEGORIES if c["isthing"]]
    for split in ("train2017", "val2017"):
        json_file = synthetic_root / "coco" / "annotations" / f"instances_{split}.json"
        api = COCO(str(json_file))
        assert len(api.getCatIds()) == 80
        ann = api.loadAnns(api.getAnnIds()[:1])[0]
        assert api.annToMask(ann).sum() > 0
        # the builtin coco_2017_* metadata asserts that the json's categories are the real 80
        records = load_coco_json(
            str(json_file), str(synthetic_root / "coco" / split), f"coco_2017_{split[:-4]}"
        )
        expected = PROFILES["smoke"].coco_train if split == "train2017" else PROFILES["smoke"].coco_val
        assert len(records) == expected
        used = {thing_names[a["category_id"]] for r in records for a in r["annotations"]}
        assert used <= VOC_AS_COCO and len(used) > 5
        for r in records:
            assert Image.open(r["file_name"]).size == (r["width"], r["height"])
            for a in r["annotations"]:
                x, y, w, h = a["bbox"]
                assert x >= 0 and y >= 0 and x + w <= r["width"] + 1e-6 and y + h <= r["height"] + 1e-6
                assert all(len(poly) >= 6 and len(poly) % 2 == 0 for poly in a["segmentation"])


def test_voc_detection_loads_with_detectron2(synthetic_root):
    from detectron2.data.datasets import load_voc_instances
    from detectron2.data.datasets.pascal_voc import CLASS_NAMES

    assert tuple(CLASS_NAMES) == VOC_CLASS_NAMES
    for year, split in (("VOC2007", "trainval"), ("VOC2007", "test"), ("VOC2012", "trainval")):
        records = load_voc_instances(str(synthetic_root / year), split, CLASS_NAMES)
        assert records and any(r["annotations"] for r in records)
        for r in records:
            x0, y0, x1, y1 = np.array([a["bbox"] for a in r["annotations"]]).T
            assert (
                (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= r["width"]).all() and (y1 <= r["height"]).all()
            )
            assert (x1 > x0).all() and (y1 > y0).all()
    difficult = [
        int(o.findtext("difficult"))
        for xml in (synthetic_root / "VOC2007" / "Annotations").glob("*.xml")
        for o in ET.parse(xml).findall("object")
    ]
    assert set(difficult) <= {0, 1}


def test_voc_segmentation_masks(synthetic_root):
    voc = synthetic_root / "VOC2012"
    lists = {
        n: (voc / "ImageSets" / "Segmentation" / f"{n}.txt").read_text().split() for n in ("train", "val")
    }
    train_aug = (voc / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split()
    assert set(lists["train"]) < set(train_aug) and not set(train_aug) & set(lists["val"])
    for image_id in lists["train"] + lists["val"]:
        mask = Image.open(voc / "SegmentationClass" / f"{image_id}.png")
        assert mask.mode == "P" and mask.getpalette()[: 3 * 21] == voc_palette()[: 3 * 21]
        values = set(np.unique(np.asarray(mask)).tolist())
        assert values <= set(range(21)) | {255} and 255 in values and 0 in values
    for image_id in train_aug:
        aug = Image.open(voc / "SegmentationClassAug" / f"{image_id}.png")
        assert aug.mode == "L" and set(np.unique(np.asarray(aug)).tolist()) <= set(range(21)) | {255}
        assert aug.size == Image.open(voc / "JPEGImages" / f"{image_id}.jpg").size


def test_cityscapes_labels_agree_with_cityscapesscripts(synthetic_root, tmp_path):
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.helpers.labels import labels
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
    from cityscapesscripts.preparation.json2labelImg import json2labelImg
    from detectron2.data.datasets.cityscapes import load_cityscapes_semantic

    train_ids = {lab.trainId for lab in labels if 0 <= lab.trainId < 19} | {255}
    for split in ("train", "val"):
        base = synthetic_root / "cityscapes"
        records = load_cityscapes_semantic(str(base / "leftImg8bit" / split), str(base / "gtFine" / split))
        assert len(records) == getattr(PROFILES["smoke"], f"cityscapes_{split}")
        for r in records:
            sem = np.asarray(Image.open(r["sem_seg_file_name"]))
            assert sem.shape == (r["height"], r["width"]) and set(np.unique(sem).tolist()) <= train_ids
    polygons = sorted((synthetic_root / "cityscapes" / "gtFine").rglob("*_polygons.json"))
    for json_file in polygons[:4]:
        stem = str(json_file)[: -len("polygons.json")]
        json2labelImg(str(json_file), str(tmp_path / "ids.png"), "ids")
        annotation = Annotation()
        annotation.fromJsonFile(str(json_file))
        # (json2instanceImg itself cannot save its mode "I" image as PNG with Pillow >= 12)
        expected_inst = np.asarray(createInstanceImage(annotation, "ids"), dtype=np.int64)
        ours = np.asarray(Image.open(stem + "labelIds.png"))
        assert np.array_equal(np.asarray(Image.open(tmp_path / "ids.png")), ours)
        inst = np.asarray(Image.open(stem + "instanceIds.png"), dtype=np.int64)
        assert np.array_equal(expected_inst, inst)
        assert (inst >= 24000).any(), "at least one instance (person, car, ...) with id*1000+k"
        color = np.asarray(Image.open(stem + "color.png"))
        assert color.shape[-1] == 4 and (color[..., 3] == 255).all()


def test_generation_is_deterministic_and_seeded(synthetic_root, tmp_path):
    again = generate(tmp_path / "again", profile="smoke", seed=0)
    assert again == json.loads((synthetic_root / "SYNTHETIC.json").read_text())
    assert _tree_digest(tmp_path / "again") == _tree_digest(synthetic_root)
    generate(tmp_path / "other", profile="smoke", seed=1)
    other = _tree_digest(tmp_path / "other")
    reference = _tree_digest(synthetic_root)
    assert other.keys() == reference.keys()
    jpegs = [k for k in reference if k.endswith(".jpg")]
    assert sum(other[k] != reference[k] for k in jpegs) == len(jpegs)


def test_generate_is_idempotent_and_guards_foreign_roots(synthetic_root, tmp_path):
    manifest = synthetic_root / "SYNTHETIC.json"
    before = manifest.stat().st_mtime_ns
    assert generate(synthetic_root, profile="smoke", seed=0)["profile"] == "smoke"
    assert manifest.stat().st_mtime_ns == before
    (tmp_path / "real" / "coco").mkdir(parents=True)
    with pytest.raises(SyntheticDataError, match="not generated by densebench"):
        generate(tmp_path / "real", profile="smoke")
    with pytest.raises(SyntheticDataError, match="unknown synthetic profile"):
        generate(tmp_path / "x", profile="huge")


def test_interrupted_regeneration_leaves_the_data_job_undone(tmp_path, monkeypatch):
    """make-data over a finished root with another seed drops the old stamp before generating: if it is
    interrupted, the runner's data/make job (done iff the stamp exists) is not done."""
    import benchmarks.__main__ as cli
    from benchmarks.jobs import Selection, build_graph
    from benchmarks.profile import load_profile

    root = tmp_path / "data"
    assert cli.main(["make-data", "--profile", "smoke", "--root", str(root)]) == 0
    (data_job,) = [
        j for j in build_graph(load_profile("smoke", [f"data.root={root}"]), Selection()) if j.kind == "data"
    ]
    assert data_job.is_done()

    def interrupted(*_):
        raise KeyboardInterrupt

    generate_module = sys.modules["benchmarks.synthetic.generate"]  # the package's `generate` is the function
    monkeypatch.setattr(generate_module, "WRITERS", (generate_module.WRITERS[0], ("coco", interrupted)))
    assert cli.main(["make-data", "--profile", "smoke", "--root", str(root), "--seed", "1"]) == 130
    assert (root / "SYNTHETIC.partial").exists() and not data_job.is_done()


def test_data_of_another_seed_leaves_the_profiles_data_job_undone(tmp_path):
    """A profile's data job is done only for its own profile and seed: after `make-data --seed 1` on the
    same root, the seed-0 profile regenerates its data instead of training on seed 1's."""
    import benchmarks.__main__ as cli
    from benchmarks.jobs import Selection, build_graph
    from benchmarks.profile import load_profile

    root = tmp_path / "data"

    def data_job(seed: int):
        profile = load_profile("smoke", [f"data.root={root}", f"data.seed={seed}"])
        return next(j for j in build_graph(profile, Selection()) if j.kind == "data")

    assert cli.main(["make-data", "--profile", "smoke", "--root", str(root)]) == 0
    assert data_job(0).is_done() and not data_job(1).is_done()
    assert cli.main(["make-data", "--profile", "smoke", "--root", str(root), "--seed", "1"]) == 0
    assert data_job(1).is_done() and not data_job(0).is_done()


def test_a_legacy_stamp_of_the_same_profile_and_seed_keeps_the_data_job_done(tmp_path):
    """Roots made before stamps named their profile and seed stay done, so their results stay current."""
    from benchmarks.jobs import LEGACY_MAKE_DATA_STAMP, Selection, build_graph
    from benchmarks.profile import load_profile

    def data_job(seed: int):
        profile = load_profile("smoke", [f"data.root={tmp_path}", f"data.seed={seed}"])
        return next(j for j in build_graph(profile, Selection()) if j.kind == "data")

    (tmp_path / LEGACY_MAKE_DATA_STAMP).write_text('{"profile": "smoke", "seed": 0, "wall_s": 3.0}')
    assert data_job(0).is_done() and not data_job(1).is_done()


def test_make_data_waits_for_another_one_on_the_same_root(tmp_path, capsys):
    import threading

    import benchmarks.__main__ as cli

    root = tmp_path / "data"
    codes = []
    with cli._exclusive(tmp_path / ".data.make-data.lock", "a test"):
        thread = threading.Thread(
            target=lambda: codes.append(cli.main(["make-data", "--profile", "smoke", "--root", str(root)]))
        )
        thread.start()
        thread.join(timeout=2)
        assert thread.is_alive() and not root.exists()  # waiting, nothing touched
    thread.join(timeout=120)
    assert codes == [0] and "waiting for another make-data writing" in capsys.readouterr().out


def test_appearance_depends_on_class():
    """Colour and texture statistics of the central crop cluster by class: the between-class spread
    exceeds the within-class spread and a leave-one-out nearest-centroid rule beats chance (5%) by far."""

    def stats(img: np.ndarray) -> np.ndarray:
        crop = img[16:48, 16:48].astype(np.float32)
        grey = crop.mean(axis=2)
        edges = np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()
        return np.concatenate([crop.reshape(-1, 3).mean(0), crop.reshape(-1, 3).std(0), [edges]])

    per_class = 6
    feats = np.array(
        [
            [stats(render_imagenet_image(0, "train", 100 * k + i, k, 64)) for i in range(per_class)]
            for k in range(20)
        ]
    )  # (classes, per_class, 7)
    flat = feats.reshape(-1, feats.shape[-1])
    feats = ((flat - flat.mean(0)) / flat.std(0)).reshape(feats.shape)
    centroids = feats.mean(axis=1)
    within = ((feats - centroids[:, None]) ** 2).sum(-1).mean()
    between = ((centroids - centroids.mean(0)) ** 2).sum(-1).mean()
    assert between > 2 * within
    hits = 0
    for k in range(20):
        for i in range(per_class):
            loo = centroids.copy()
            loo[k] = (feats[k].sum(0) - feats[k, i]) / (per_class - 1)
            hits += int(np.argmin(((loo - feats[k, i]) ** 2).sum(-1)) == k)
    assert hits / (20 * per_class) > 0.4
