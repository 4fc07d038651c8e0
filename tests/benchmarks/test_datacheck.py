"""check_root reports exactly the damage done to a copy of the clean smoke root; nothing on a clean one."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from benchmarks.datacheck import DataCheckError, Problem, check_root, format_report


@pytest.fixture()
def damaged_copy(synthetic_root, tmp_path) -> Path:
    root = tmp_path / "datasets"
    shutil.copytree(synthetic_root, root)
    return root


def test_clean_smoke_root_has_no_problems(synthetic_root):
    problems = check_root(synthetic_root)
    assert problems == [], format_report(problems)
    assert "No problems" in format_report(problems)


def test_truncated_jpeg_missing_xml_and_missing_split_are_reported_by_path(damaged_copy):
    voc07, voc12 = damaged_copy / "VOC2007", damaged_copy / "VOC2012"
    first_trainval = (voc07 / "ImageSets" / "Main" / "trainval.txt").read_text().split()[0]
    jpeg = voc07 / "JPEGImages" / f"{first_trainval}.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    xml = (
        voc12
        / "Annotations"
        / f"{(voc12 / 'ImageSets' / 'Main' / 'trainval.txt').read_text().split()[-1]}.xml"
    )
    xml.unlink()
    split_file = voc07 / "ImageSets" / "Main" / "test.txt"
    split_file.unlink()

    problems = check_root(damaged_copy)
    assert sorted(p.path for p in problems) == sorted([jpeg, xml, split_file]), format_report(problems)
    by_path = {p.path: p for p in problems}
    assert "cannot be decoded" in by_path[jpeg].problem
    assert "VOCtest_06-Nov-2007.tar" in by_path[split_file].fix
    assert "make-data" in by_path[xml].fix  # a synthetic root is fixed by regenerating it


def test_the_fix_for_a_synthetic_root_works_when_followed(damaged_copy):
    """The advice names commands that regenerate the root (make-data refuses a root whose datasets lack
    SYNTHETIC.json, so deleting only the manifest would not do)."""
    import benchmarks.__main__ as cli

    next((damaged_copy / "VOC2007" / "Annotations").glob("*.xml")).unlink()
    (problem,) = check_root(damaged_copy)
    remove, make_data = re.findall(r"`([^`]+)`", problem.fix)
    assert shlex.split(remove) == ["rm", "-r", str(damaged_copy)]
    shutil.rmtree(damaged_copy)
    argv = shlex.split(make_data)
    assert argv[:3] == ["python", "-m", "benchmarks"] and "--seed" in argv and "smoke" in argv
    assert cli.main(argv[3:]) == 0
    assert check_root(damaged_copy) == []


def test_imagenet_val_is_required_only_when_asked_for(damaged_copy):
    """Only the linear classification reads imagenet/val: a root for Tables 1-3 may lack it."""
    val = damaged_copy / "imagenet" / "val"
    shutil.rmtree(val)
    assert check_root(damaged_copy) == [] and check_root(damaged_copy, ["imagenet"]) == []
    (problem,) = check_root(damaged_copy, ["imagenet_val"])
    assert problem.path == val and "linear classification" in problem.problem


def test_imagenet_val_is_checked_where_present(damaged_copy):
    class_dir = next(p for p in (damaged_copy / "imagenet" / "val").iterdir() if p.is_dir())
    class_dir.rename(class_dir.with_name("n99999999"))  # a class train lacks
    (problem,) = check_root(damaged_copy)
    assert problem.path == damaged_copy / "imagenet" / "val" and "n99999999" in problem.problem


def test_missing_label_train_ids_points_to_cityscapesscripts(damaged_copy):
    victim = next((damaged_copy / "cityscapes" / "gtFine" / "val").rglob("*_gtFine_labelTrainIds.png"))
    victim.unlink()
    problems = check_root(damaged_copy, ["cityscapes"])
    assert [p.path for p in problems] == [victim]
    assert "createTrainIdLabelImgs" in problems[0].fix
    assert f"CITYSCAPES_DATASET={damaged_copy / 'cityscapes'}" in problems[0].fix


def test_coco_json_structure_and_dataset_filter(damaged_copy):
    ann = damaged_copy / "coco" / "annotations" / "instances_val2017.json"
    data = json.loads(ann.read_text())
    data["annotations"][0]["image_id"] = 987654321
    ann.write_text(json.dumps(data))
    train_ann = damaged_copy / "coco" / "annotations" / "instances_train2017.json"
    train_ann.write_text("{ not json")
    (damaged_copy / "VOC2012" / "ImageSets" / "Segmentation" / "train_aug.txt").unlink()

    problems = check_root(damaged_copy, ["coco"])
    assert sorted(p.path for p in problems) == sorted([ann, train_ann])
    assert any("refer to image ids" in p.problem for p in problems)
    seg = check_root(damaged_copy, ["voc_seg"])
    assert [p.path.name for p in seg] == ["train_aug.txt"] and "SBD" in seg[0].fix


def test_wrong_voc_mask_values_and_unknown_names(damaged_copy):
    from PIL import Image

    val_id = (damaged_copy / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").read_text().split()[0]
    mask = damaged_copy / "VOC2012" / "SegmentationClass" / f"{val_id}.png"
    Image.open(mask).convert("RGB").save(mask)  # the classic mistake: colour PNGs instead of indices
    problems = check_root(damaged_copy, ["voc_seg"])
    assert [p.path for p in problems] == [mask] and "index PNG" in problems[0].problem
    with pytest.raises(DataCheckError, match="unknown dataset"):
        check_root(damaged_copy, ["imagenet", "kinetics"])


def test_missing_root_and_report_format(tmp_path):
    problems = check_root(tmp_path / "nowhere")
    assert len(problems) == 1 and "DETECTRON2_DATASETS" in problems[0].fix
    many = [
        Problem(tmp_path / f"{i}.jpg", "the file is missing; expected an image.", "restore it")
        for i in range(13)
    ]
    text = format_report(many, per_kind=10)
    assert text.startswith("13 problem(s) found") and "and 3 more" in text
    assert str(many[0]) == f"{tmp_path / '0.jpg'}: the file is missing; expected an image. Fix: restore it"
