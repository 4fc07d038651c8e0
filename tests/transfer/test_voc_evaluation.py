"""VOCDetectionEvaluator: Detectron2's VOC numbers, plus each class's AP."""

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.datasets.pascal_voc import register_pascal_voc
from detectron2.evaluation import PascalVOCDetectionEvaluator
from detectron2.structures import Boxes, Instances

from benchmarks.synthetic.vocabulary import VOC_CLASS_NAMES
from transfer.tasks import per_class_metrics
from transfer.voc_evaluation import VOCDetectionEvaluator


def _noisy_detections(records: list[dict], rng: np.random.Generator) -> list[tuple[dict, dict]]:
    """(input, output) pairs: every ground-truth box shifted by a few pixels, with a random score,
    about a fifth of them labelled with a wrong class, plus one false positive per image."""
    pairs = []
    for rec in records:
        boxes, classes = [], []
        for ann in rec["annotations"]:
            boxes.append(np.asarray(ann["bbox"], dtype=np.float32) + rng.normal(0.0, 3.0, 4))
            wrong = rng.random() < 0.2
            classes.append(int(rng.integers(len(VOC_CLASS_NAMES))) if wrong else ann["category_id"])
        boxes.append(np.array([0.0, 0.0, 20.0, 20.0], dtype=np.float32))
        classes.append(int(rng.integers(len(VOC_CLASS_NAMES))))
        instances = Instances((rec["height"], rec["width"]))
        instances.pred_boxes = Boxes(torch.tensor(np.stack(boxes)))
        instances.scores = torch.tensor(rng.random(len(boxes)), dtype=torch.float32)
        instances.pred_classes = torch.tensor(classes)
        pairs.append(({"image_id": rec["image_id"]}, {"instances": instances}))
    return pairs


@pytest.fixture()
def voc_test_set(synthetic_root):
    name = "voc_2007_test_evaluation_check"
    if name not in DatasetCatalog.list():
        register_pascal_voc(name, str(synthetic_root / "VOC2007"), "test", 2007, VOC_CLASS_NAMES)
    return name


def test_same_numbers_as_detectron2_and_each_class(voc_test_set):
    pairs = _noisy_detections(DatasetCatalog.get(voc_test_set), np.random.default_rng(0))
    theirs, ours = PascalVOCDetectionEvaluator(voc_test_set), VOCDetectionEvaluator(voc_test_set)
    for evaluator in (theirs, ours):
        evaluator.reset()
        for inputs, outputs in pairs:
            evaluator.process([inputs], [outputs])
    expected, got = theirs.evaluate()["bbox"], ours.evaluate()["bbox"]
    assert 0 < expected["AP50"] < 100  # noisy boxes and wrong labels: neither perfect nor empty
    for key in ("AP", "AP50", "AP75"):
        assert got[key] == pytest.approx(expected[key])

    per_class = per_class_metrics({"bbox": got})
    assert len(per_class) == 2 * len(VOC_CLASS_NAMES)
    ap50 = [per_class[f"bbox/AP50-{name}"] for name in VOC_CLASS_NAMES]
    ap = [per_class[f"bbox/AP-{name}"] for name in VOC_CLASS_NAMES]
    assert np.mean(ap50) == pytest.approx(got["AP50"]) and np.mean(ap) == pytest.approx(got["AP"])
    assert len(set(ap50)) > 1  # classes differ: these are per-class values, not the mean repeated


def test_per_class_metrics_keeps_only_class_values_and_nan_as_none():
    results = {
        "bbox": {"AP": 30.0, "APs": 10.0, "AP-person": 40.0, "AP-cat": float("nan")},
        "sem_seg": {"mIoU": 50.0, "IoU-road": 90.0, "ACC-road": 95.0},
    }
    assert per_class_metrics(results) == {
        "bbox/AP-person": 40.0,
        "bbox/AP-cat": None,
        "sem_seg/IoU-road": 90.0,
        "sem_seg/ACC-road": 95.0,
    }
