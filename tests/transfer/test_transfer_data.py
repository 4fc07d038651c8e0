"""VOC 2012 segmentation registration, raw label reading, the sem-seg mapper, dataset checks and the
guard that names or skips unreadable images."""

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MapDataset, MetadataCatalog
from detectron2.data import detection_utils as utils
from PIL import Image
from transfer_testutils import CONFIGS, make_cfg

from transfer.bad_images import BadImageLog, read_bad_images
from transfer.data import SemSegDatasetMapper, check_datasets
from transfer.data.guarded_mapper import GuardedMapper, too_many_bad_images
from transfer.data.sem_seg_mapper import read_label_png
from transfer.data.voc_sem_seg import load_voc_sem_seg
from transfer.errors import TransferError


def _palette_png(path, labels: np.ndarray) -> None:
    """VOC-style palette PNG: index k drawn with a colour whose luminance is not k."""
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [224, 224, 192] * 252
    image.putpalette(palette[: 256 * 3])
    image.save(path)


def test_palette_labels_are_read_as_raw_indices(tmp_path):
    labels = np.array([[0, 1, 2], [3, 255, 1]])
    _palette_png(tmp_path / "l.png", labels)
    assert np.array_equal(read_label_png(str(tmp_path / "l.png")), labels)
    luminance = utils.read_image(str(tmp_path / "l.png"), "L").squeeze(2)  # what Detectron2 would read
    assert not np.array_equal(luminance, labels)


def _voc_image(tmp_path, width=40, height=30):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(tmp_path / "i.jpg")
    labels = np.zeros((height, width), dtype=np.uint8)
    labels[: height // 2] = 2
    _palette_png(tmp_path / "l.png", labels)
    return {"file_name": str(tmp_path / "i.jpg"), "sem_seg_file_name": str(tmp_path / "l.png")}


def test_train_mapper_rescales_crops_pads_with_ignore(tmp_path):
    opts = ["INPUT.CROP.SIZE", "[64, 64]", "INPUT.MIN_SIZE_TRAIN", "(15, 30)", "INPUT.MAX_SIZE_TRAIN", "120"]
    cfg = make_cfg(str(CONFIGS / "fcn_R_50_d8_voc12aug_20k_ssl.yaml"), *opts)
    out = SemSegDatasetMapper(cfg, is_train=True)(_voc_image(tmp_path))
    assert out["image"].shape == (3, 64, 64) and out["sem_seg"].shape == (64, 64)
    assert set(out["sem_seg"].unique().tolist()) <= {0, 2, 255}
    mean = torch.tensor([124, 116, 104], dtype=torch.uint8)[:, None]  # the config's PIXEL_MEAN (RGB), rounded
    assert (out["sem_seg"][-1] == 255).all() and (out["image"][:, -1] == mean).all()  # padding
    assert (out["height"], out["width"]) == (30, 40)


def test_test_mapper_resizes_and_keeps_the_evaluation_size(tmp_path):
    opts = ["INPUT.MIN_SIZE_TEST", "60", "INPUT.MAX_SIZE_TEST", "200"]
    cfg = make_cfg(str(CONFIGS / "fcn_R_50_d8_voc12aug_20k.yaml"), *opts)
    out = SemSegDatasetMapper(cfg, is_train=False)(_voc_image(tmp_path))
    assert out["image"].shape == (3, 60, 80) and "sem_seg" not in out
    assert (out["height"], out["width"]) == (30, 40)


def test_voc_sem_seg_splits(tmp_path):
    split_dir = tmp_path / "ImageSets" / "Segmentation"
    split_dir.mkdir(parents=True)
    (split_dir / "train_aug.txt").write_text("2007_000032\n2011_003276\n")
    dicts = load_voc_sem_seg(str(tmp_path), "train_aug", "SegmentationClassAug")
    assert [d["sem_seg_file_name"] for d in dicts] == [
        str(tmp_path / "SegmentationClassAug" / "2007_000032.png"),
        str(tmp_path / "SegmentationClassAug" / "2011_003276.png"),
    ]
    assert dicts[0]["file_name"] == str(tmp_path / "JPEGImages" / "2007_000032.jpg")
    with pytest.raises(TransferError, match="check-data"):
        load_voc_sem_seg(str(tmp_path), "val", "SegmentationClass")
    meta = MetadataCatalog.get("voc_2012_sem_seg_val")
    assert (
        len(meta.stuff_classes) == 21 and meta.stuff_classes[0] == "background" and meta.ignore_label == 255
    )
    assert "voc_2012_sem_seg_train_aug" in DatasetCatalog.list()


def test_unregistered_and_missing_datasets_are_named(tmp_path):
    with pytest.raises(TransferError, match=r"voc_2012_sem_seg_trainaug.*not registered.*did you mean"):
        check_datasets(["voc_2012_sem_seg_trainaug"])
    name = "voc_2012_sem_seg_transfer_test_missing"
    DatasetCatalog.register(name, list)
    MetadataCatalog.get(name).set(split_file=str(tmp_path / "VOC2012" / "val.txt"))
    try:
        with pytest.raises(TransferError, match=r"missing .*val\.txt.*DETECTRON2_DATASETS.*check-data"):
            check_datasets([name])
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_cityscapes_without_train_id_labels_names_the_fix(tmp_path):
    image_dir, gt_dir = (
        tmp_path / "cityscapes" / "leftImg8bit" / "train",
        tmp_path / "cityscapes" / "gtFine" / "train",
    )
    (image_dir / "aachen").mkdir(parents=True)
    (gt_dir / "aachen").mkdir(parents=True)
    (gt_dir / "aachen" / "aachen_000000_000019_gtFine_labelIds.png").touch()
    name = "cityscapes_fine_sem_seg_transfer_test"
    DatasetCatalog.register(name, list)
    MetadataCatalog.get(name).set(
        image_dir=str(image_dir), gt_dir=str(gt_dir), evaluator_type="cityscapes_sem_seg"
    )
    try:
        with pytest.raises(TransferError) as caught:
            check_datasets([name])
        message = str(caught.value)
        assert f"labelTrainIds.png label under {gt_dir}" in message
        assert (
            f"CITYSCAPES_DATASET={tmp_path / 'cityscapes'} python -m "
            "cityscapesscripts.preparation.createTrainIdLabelImgs" in message
        )
        (gt_dir / "aachen" / "aachen_000000_000019_gtFine_labelTrainIds.png").touch()
        check_datasets([name])
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _guarded_voc_mapper(tmp_path, bad_images=None) -> GuardedMapper:
    cfg = make_cfg(str(CONFIGS / "fcn_R_50_d8_voc12aug_20k_ssl.yaml"), "INPUT.CROP.SIZE", "[32, 32]")
    return GuardedMapper(SemSegDatasetMapper(cfg, is_train=True), bad_images)


def test_an_unreadable_image_is_named_with_the_fix(tmp_path):
    sample = _voc_image(tmp_path)
    (tmp_path / "i.jpg").write_bytes((tmp_path / "i.jpg").read_bytes()[:200])  # truncated JPEG
    with pytest.raises(TransferError) as caught:
        _guarded_voc_mapper(tmp_path)(sample)
    message = str(caught.value)
    assert str(tmp_path / "i.jpg") in message and str(tmp_path / "l.png") in message
    assert "check-data" in message and "TRANSFER.SKIP_BAD_IMAGES True" in message


def test_a_label_of_another_size_is_named_or_skipped(tmp_path):
    good = _voc_image(tmp_path)
    _palette_png(tmp_path / "small.png", np.zeros((20, 40)))
    bad = {**good, "sem_seg_file_name": str(tmp_path / "small.png")}
    with pytest.raises(TransferError) as caught:
        _guarded_voc_mapper(tmp_path)(bad)
    message = str(caught.value)
    assert f"Label {tmp_path / 'small.png'} is (40, 20) (w, h) but its image" in message
    assert "TRANSFER.SKIP_BAD_IMAGES True" in message
    log = BadImageLog(tmp_path / "bad_images.txt", 1, too_many_bad_images)
    dataset = MapDataset([bad, good], _guarded_voc_mapper(tmp_path, log))  # Detectron2's retry on None
    assert dataset[0]["file_name"] == good["file_name"]
    assert "SizeMismatchError" in read_bad_images(log.path)[good["file_name"]]


def test_skipped_training_images_are_listed_and_replaced_by_another(tmp_path):
    good = _voc_image(tmp_path)
    bad = {**good, "file_name": str(tmp_path / "missing.jpg")}
    log = BadImageLog(tmp_path / "bad_images.txt", 1, too_many_bad_images)
    dataset = MapDataset([bad, good], _guarded_voc_mapper(tmp_path, log))  # Detectron2's retry on None
    for _ in range(2):
        assert dataset[0]["file_name"] == good["file_name"]
    records = read_bad_images(log.path)
    assert list(records) == [bad["file_name"]] and "FileNotFoundError" in records[bad["file_name"]]
    assert len(log.path.read_text().splitlines()) == 1  # one line per distinct file
    worse = {**good, "file_name": str(tmp_path / "also_missing.jpg")}
    with pytest.raises(TransferError, match=r"2 training images .*TRANSFER\.MAX_BAD_IMAGES 1"):
        _guarded_voc_mapper(tmp_path, log)(worse)
