"""Fine-tuning CLI: clear exit-2 messages on bad input; each task trains, evaluates, writes metrics.json;
an unreadable training image stops the run by name, or is skipped and listed with TRANSFER.SKIP_BAD_IMAGES."""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from transfer_testutils import CONFIGS, REPO, random_resnet_state_dict
from wandb_testutils import offline_runs

from transfer import train_net
from transfer.bad_images import read_bad_images
from transfer.convert import convert_checkpoint
from transfer.errors import TransferError
from transfer.tasks import TASK_METRICS, task_metrics
from transfer.train_net import cli

SMALL = ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64", "SOLVER.MAX_ITER", "2"]
SMALL += ["SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0", "SEED", "0"]
DETECTION = ["SOLVER.STEPS", "(1,)", "SOLVER.WARMUP_ITERS", "1", "INPUT.MIN_SIZE_TRAIN", "(96,)"]
DETECTION += ["INPUT.MAX_SIZE_TRAIN", "160", "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "160"]
DETECTION += ["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16", "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200"]
DETECTION += ["MODEL.RPN.POST_NMS_TOPK_TRAIN", "32", "MODEL.RPN.PRE_NMS_TOPK_TEST", "200"]
DETECTION += ["MODEL.RPN.POST_NMS_TOPK_TEST", "16", "TEST.DETECTIONS_PER_IMAGE", "10"]
DETECTION += ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "TEST.PRECISE_BN.NUM_ITER", "1"]
FPN_WIDTH = [
    "MODEL.FPN.OUT_CHANNELS",
    "32",
    "MODEL.ROI_BOX_HEAD.CONV_DIM",
    "32",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "64",
]
FPN_WIDTH += ["MODEL.ROI_MASK_HEAD.CONV_DIM", "32"]
SEGMENTATION = [
    "INPUT.MIN_SIZE_TRAIN",
    "(48, 192)",
    "INPUT.MAX_SIZE_TRAIN",
    "768",
    "INPUT.CROP.SIZE",
    "[64, 64]",
]
SEGMENTATION += ["INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "400"]
SEGMENTATION += ["MODEL.SEM_SEG_HEAD.CONVS_DIM", "64", "MODEL.SEM_SEG_HEAD.AUX_CONVS_DIM", "32"]

VOC_DET = str(CONFIGS / "pascal_voc_R_50_C4_24k_ssl.yaml")


def test_metric_names_follow_the_interface():
    bbox = {"AP": 1.0, "AP50": 2.0, "AP75": 3.0, "APm": 9.0}  # COCO's APm is medium-object box AP
    segm = {"AP": 4.0, "AP50": 5.0, "AP75": float("nan")}  # NaN: no detection at all
    assert task_metrics("coco_det_inst", {"bbox": bbox, "segm": segm}) == {
        "APb": 1.0,
        "APb50": 2.0,
        "APb75": 3.0,
        "APm": 4.0,
        "APm50": 5.0,
        "APm75": 0.0,
    }
    sem_seg = {"mIoU": 1.0, "fwIoU": 7.0, "mACC": 2.0, "pACC": 3.0}
    assert task_metrics("voc_sem_seg", {"sem_seg": sem_seg}) == {"mIoU": 1.0, "mAcc": 2.0, "pAcc": 3.0}
    with pytest.raises(TransferError, match="no bbox/AP75"):
        task_metrics("voc_det", {"bbox": {"AP": 1.0, "AP50": 2.0}})


def _cli_error(capsys, *argv: str) -> str:
    assert cli(["--config-file", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_missing_weights_file_exits_2(capsys, tmp_path):
    err = _cli_error(
        capsys, VOC_DET, "MODEL.WEIGHTS", str(tmp_path / "nope.pkl"), "OUTPUT_DIR", str(tmp_path)
    )
    assert "nope.pkl does not exist" in err


def test_non_resnet_checkpoint_exits_2(capsys, tmp_path):
    torch.save({"state_dict": {"features.0.weight": torch.zeros(2)}}, tmp_path / "vgg.pth")
    err = _cli_error(capsys, VOC_DET, "MODEL.WEIGHTS", str(tmp_path / "vgg.pth"), "OUTPUT_DIR", str(tmp_path))
    assert "holds no ResNet weights" in err


def test_weights_of_another_depth_exit_2(capsys, tmp_path):
    torch.save(random_resnet_state_dict(18), tmp_path / "r18.pth")
    convert_checkpoint(tmp_path / "r18.pth", tmp_path / "r18.pkl")
    err = _cli_error(capsys, VOC_DET, "MODEL.WEIGHTS", str(tmp_path / "r18.pkl"), "OUTPUT_DIR", str(tmp_path))
    assert "ResNet-18 but MODEL.RESNETS.DEPTH is 50" in err


def test_several_backbones_in_a_raw_checkpoint_point_to_convert_with_prefix(capsys, tmp_path):
    state = random_resnet_state_dict(18)
    two = {f"student.{k}": v for k, v in state.items()} | {f"backbone.{k}": v for k, v in state.items()}
    torch.save(two, tmp_path / "two.pth")
    err = _cli_error(capsys, VOC_DET, "MODEL.WEIGHTS", str(tmp_path / "two.pth"), "OUTPUT_DIR", str(tmp_path))
    assert f"`python -m transfer.convert {tmp_path / 'two.pth'} OUT.pkl --prefix backbone.`" in err
    assert "MODEL.WEIGHTS OUT.pkl" in err


def test_converted_weights_with_a_bgr_config_exit_2(capsys, tmp_path):
    torch.save(random_resnet_state_dict(18), tmp_path / "r18.pth")
    convert_checkpoint(tmp_path / "r18.pth", tmp_path / "r18.pkl")
    bgr = str(CONFIGS / "pascal_voc_R_50_C4_24k.yaml")
    err = _cli_error(
        capsys, bgr, *SMALL, "MODEL.WEIGHTS", str(tmp_path / "r18.pkl"), "OUTPUT_DIR", str(tmp_path)
    )
    assert "torchvision-layout ResNet" in err and "INPUT.FORMAT BGR" in err and "_ssl.yaml" in err


MESSAGE = "cannot read image a.jpg: truncated. Replace it."


class _BadInputDataset(Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int):
        raise TransferError(MESSAGE)


def _child_meeting_bad_input(index: int) -> None:
    """A process of `launch(main, num_gpus > 1)`, which runs torch.multiprocessing.start_processes."""
    raise TransferError(MESSAGE)


def _load_in_a_worker(*args, **kwargs) -> None:
    next(iter(DataLoader(_BadInputDataset(), num_workers=1)))


def _run_in_a_child_process(*args, **kwargs) -> None:
    torch.multiprocessing.start_processes(_child_meeting_bad_input, nprocs=1, start_method="fork")


@pytest.mark.parametrize("launch", [_load_in_a_worker, _run_in_a_child_process])
def test_bad_input_met_in_a_worker_or_child_process_is_one_paragraph(capsys, monkeypatch, launch):
    monkeypatch.setattr(train_net, "prepare", lambda args: None)
    monkeypatch.setattr(train_net, "launch", launch)
    assert cli(["--config-file", VOC_DET]) == 2
    assert capsys.readouterr().err == f"error: {MESSAGE}\n"


def test_wandb_project_without_wandb_installed_exits_2(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    err = _cli_error(capsys, VOC_DET, "WANDB.PROJECT", "p", "OUTPUT_DIR", str(tmp_path))
    assert "WANDB.PROJECT is 'p' but the wandb package is not installed" in err and "pip install wandb" in err


def test_unregistered_dataset_exits_2(capsys, tmp_path):
    err = _cli_error(capsys, VOC_DET, "DATASETS.TEST", "('voc_2007_tset',)", "OUTPUT_DIR", str(tmp_path))
    assert "'voc_2007_tset' is not registered" in err and "voc_2007_test" in err


def _train_net(*argv: str, datasets_root) -> subprocess.CompletedProcess:
    """train_net in a fresh process: $DETECTRON2_DATASETS must be set before Detectron2 is imported."""
    env = dict(os.environ, DETECTRON2_DATASETS=str(datasets_root), OMP_NUM_THREADS="2")
    return subprocess.run(
        [sys.executable, "-m", "transfer.train_net", *argv], cwd=REPO, env=env, capture_output=True, text=True
    )


def test_missing_dataset_root_exits_2(tmp_path):
    run = _train_net(
        "--config-file", VOC_DET, "OUTPUT_DIR", str(tmp_path), datasets_root=tmp_path / "nowhere"
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert "nowhere" in run.stderr and "check-data" in run.stderr


def _check_metrics(out_dir, task: str, weights: str) -> dict:
    record = json.loads((out_dir / "metrics.json").read_text())
    assert record["task"] == task and record["iters"] == 2 and record["ims_per_batch"] == 2
    assert set(record["metrics"]) == set(TASK_METRICS[task])
    assert all(math.isfinite(v) for v in record["metrics"].values()), record["metrics"]
    assert record["weights"] == weights and record["wall_s"] > 0
    assert record["lr_scaling"]["rule"].startswith("linear")
    scaling = record["lr_scaling"]
    assert scaling["reference_ims_per_batch"] == (8 if task == "cityscapes_sem_seg" else 16)
    assert record["base_lr"] == pytest.approx(
        scaling["configured_base_lr"] * 2 / scaling["reference_ims_per_batch"]
    )
    assert (out_dir / "config.yaml").is_file()
    log = (out_dir / "log.txt").read_text()
    assert "SyncBN -> BN" in log and "Running with full config" in log
    assert "\x1b[" not in log, "terminal colour codes in log.txt"
    prefix = {"voc_det": "bbox/AP50-", "coco_det_inst": "segm/AP-"}.get(task, "sem_seg/IoU-")
    assert any(key.startswith(prefix) for key in record["per_class"]), sorted(record["per_class"])[:5]
    return record


@pytest.mark.slow
def test_voc_detection_from_a_raw_pretraining_checkpoint(detectron2_datasets, tmp_path):
    state = {f"encoder_q.backbone.{k}": v for k, v in random_resnet_state_dict(18).items() if "fc." not in k}
    torch.save({"state_dict": state | {"queue_global": torch.zeros(4, 8)}}, tmp_path / "model_final.pth")
    argv = ["--config-file", VOC_DET, *SMALL, *DETECTION, "MODEL.WEIGHTS", str(tmp_path / "model_final.pth")]
    run = _train_net(*argv, "OUTPUT_DIR", str(tmp_path / "out"), datasets_root=detectron2_datasets)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ResNet-18 backbone under prefix 'encoder_q.backbone.'" in run.stdout
    _check_metrics(tmp_path / "out", "voc_det", str(tmp_path / "model_final.pth"))


@pytest.mark.slow
def test_coco_detection_and_instance_segmentation(detectron2_datasets, tmp_path):
    config = str(CONFIGS / "coco_R_50_FPN_1x_syncbn_ssl.yaml")
    argv = ["--config-file", config, *SMALL, *DETECTION, *FPN_WIDTH, "MODEL.WEIGHTS", ""]
    run = _train_net(*argv, "OUTPUT_DIR", str(tmp_path), datasets_root=detectron2_datasets)
    assert run.returncode == 0, run.stderr[-3000:]
    _check_metrics(tmp_path, "coco_det_inst", "")


@pytest.mark.slow
def test_voc_segmentation_from_converted_weights_resume_and_eval_only(detectron2_datasets, tmp_path):
    torch.save(random_resnet_state_dict(18), tmp_path / "r18.pth")
    convert_checkpoint(tmp_path / "r18.pth", tmp_path / "r18.pkl")
    config = str(CONFIGS / "fcn_R_50_d8_voc12aug_20k_ssl.yaml")
    argv = ["--config-file", config, *SMALL, *SEGMENTATION, "MODEL.WEIGHTS", str(tmp_path / "r18.pkl")]
    run = _train_net(*argv, "OUTPUT_DIR", str(tmp_path / "out"), datasets_root=detectron2_datasets)
    assert run.returncode == 0, run.stderr[-3000:]
    trained = _check_metrics(tmp_path / "out", "voc_sem_seg", str(tmp_path / "r18.pkl"))

    rerun = _train_net(
        "--resume", *argv, "OUTPUT_DIR", str(tmp_path / "out"), datasets_root=detectron2_datasets
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "model_final.pth (model, optimizer, scheduler): continuing at iteration 2 of 2" in log
    assert _check_metrics(tmp_path / "out", "voc_sem_seg", str(tmp_path / "r18.pkl"))[
        "metrics"
    ] == pytest.approx(trained["metrics"])

    final = str(tmp_path / "out" / "model_final.pth")
    evaluated = _train_net(
        "--eval-only",
        *argv,
        "MODEL.WEIGHTS",
        final,
        "OUTPUT_DIR",
        str(tmp_path / "eval"),
        datasets_root=detectron2_datasets,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    record = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert record["eval_only"] and record["iters"] == 0 and record["weights"] == final
    assert record["metrics"] == pytest.approx(trained["metrics"])


@pytest.mark.slow
def test_cityscapes_segmentation_with_sliding_window_logged_to_wandb(
    detectron2_datasets, tmp_path, wandb_offline
):
    config = str(CONFIGS / "fcn_R_50_d8_cityscapes_40k_ssl.yaml")
    argv = ["--config-file", config, *SMALL, *SEGMENTATION, "INPUT.MIN_SIZE_TEST", "64", "MODEL.WEIGHTS", ""]
    wandb = ["WANDB.PROJECT", "densebench-test", "WANDB.NAME", "cell/table3/cityscapes_sem_seg/random/seed0"]
    run = _train_net(*argv, *wandb, "OUTPUT_DIR", str(tmp_path), datasets_root=detectron2_datasets)
    assert run.returncode == 0, run.stderr[-3000:]
    _check_metrics(tmp_path, "cityscapes_sem_seg", "")
    _, sessions = offline_runs(tmp_path)
    # history: the training scalars and the EvalHook results; summary: metrics.json's names (pAcc, not pACC)
    expected = (b"cell/table3/cityscapes_sem_seg/random/seed0", b"total_loss", b"sem_seg/mIoU", b"pAcc")
    assert len(sessions) == 1 and [text for text in expected if text not in sessions[0]] == []


@pytest.mark.slow
def test_an_unreadable_training_image_stops_the_run_or_is_skipped(synthetic_root, tmp_path):
    root = tmp_path / "datasets"
    shutil.copytree(synthetic_root, root)
    split = root / "VOC2012" / "ImageSets" / "Segmentation" / "train_aug.txt"
    ids = split.read_text().split()[:3]
    split.write_text("\n".join(ids) + "\n")  # 3 images: the 4 samples of 2 iterations x 2 include each
    bad = root / "VOC2012" / "JPEGImages" / f"{ids[1]}.jpg"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    config = str(CONFIGS / "fcn_R_50_d8_voc12aug_20k_ssl.yaml")
    argv = ["--config-file", config, *SMALL, *SEGMENTATION, "MODEL.WEIGHTS", ""]

    stopped = _train_net(*argv, "OUTPUT_DIR", str(tmp_path / "stop"), datasets_root=root)
    assert stopped.returncode == 2, stopped.stderr[-3000:]
    assert f"cannot read image {bad}" in stopped.stderr and "Traceback" not in stopped.stderr
    assert not (tmp_path / "stop" / "metrics.json").exists()

    skip = ["TRANSFER.SKIP_BAD_IMAGES", "True"]
    skipped = _train_net(*argv, *skip, "OUTPUT_DIR", str(tmp_path / "skip"), datasets_root=root)
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    assert list(read_bad_images(tmp_path / "skip" / "bad_images.txt")) == [str(bad)]
    assert json.loads((tmp_path / "skip" / "metrics.json").read_text())["skipped_images"] == 1
