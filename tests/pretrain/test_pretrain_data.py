"""Datasets, augmentation, the resumable sampler and clear errors for bad data."""

import pytest
import torch
from pretrain_testutils import tiny_cfg, write_jpegs

from pretrain import checkpoint
from pretrain.bad_images import pretrain_bad_image_log
from pretrain.data import ResumableDistributedSampler, blur_kernel_size, blur_sigma_range, build_dataset
from pretrain.errors import PretrainError
from pretrain.train_net import main
from transfer.bad_images import read_bad_images


def test_two_crop_views(tiny_root):
    cfg = tiny_cfg("densecl", **{"DATA.ROOT": str(tiny_root), "DATA.DATASET": "coco"})
    ds = build_dataset(cfg)
    assert len(ds) == 8
    torch.manual_seed(0)
    view_q, view_k, label = ds[0]
    assert view_q.shape == view_k.shape == (3, 32, 32) and label == -1
    assert not torch.equal(view_q, view_k)


def test_imagenet_folder_labels_and_supervised(tiny_root):
    cfg = tiny_cfg("supervised", **{"DATA.ROOT": str(tiny_root), "DATA.DATASET": "imagenet"})
    ds = build_dataset(cfg)
    assert ds.classes == ["n0001", "n0002"] and len(ds) == 8
    image, label = ds[5]
    assert image.shape == (3, 32, 32) and label == 1
    with pytest.raises(PretrainError, match="needs labels"):
        build_dataset(tiny_cfg("supervised", **{"DATA.ROOT": str(tiny_root), "DATA.DATASET": "coco"}))


def test_blur_kernel_is_odd_and_about_ten_percent():
    assert blur_kernel_size(224, 0.1) == 23
    assert blur_kernel_size(64, 0.1) == 7
    assert blur_kernel_size(32, 0.1) == 3


def test_blur_sigma_scales_with_the_crop_like_the_kernel():
    assert blur_sigma_range(224, [0.1, 2.0], 224) == pytest.approx((0.1, 2.0))
    assert blur_sigma_range(64, [0.1, 2.0], 224) == pytest.approx((0.1 * 64 / 224, 2.0 * 64 / 224))
    assert blur_sigma_range(64, [0.1, 2.0], 0) == (0.1, 2.0)
    with pytest.raises(PretrainError, match=r"DATA\.BLUR_SIGMA \[2\.0, 0\.1\]: expected \[min, max\]"):
        blur_sigma_range(64, [2.0, 0.1], 224)


def test_missing_dataset_names_path_and_layout(tmp_path):
    cfg = tiny_cfg(**{"DATA.ROOT": str(tmp_path / "nowhere"), "DATA.DATASET": "imagenet"})
    with pytest.raises(PretrainError) as err:
        build_dataset(cfg)
    assert str(tmp_path / "nowhere" / "imagenet" / "train") in str(err.value)
    assert "<class>" in str(err.value)


@pytest.mark.parametrize("content", [b"not a jpeg at all", "truncated"])
def test_corrupt_image_error_names_path(tiny_root, content):
    folder = tiny_root / "coco" / "train2017"
    bad = folder / "zz_bad.jpg"
    if content == "truncated":
        good = write_jpegs(folder, 1, seed=9, size=(64, 64))[0]
        bad.write_bytes(good.read_bytes()[:300])
    else:
        bad.write_bytes(content)
    ds = build_dataset(tiny_cfg(**{"DATA.ROOT": str(tiny_root), "DATA.DATASET": "coco"}))
    index = [p for p, _ in ds.samples].index(bad)
    with pytest.raises(PretrainError, match=str(bad)):
        ds[index]


def test_cli_reports_corrupt_image_and_exits_2(tiny_root, tmp_path, capsys):
    (tiny_root / "coco" / "train2017" / "broken.jpg").write_bytes(b"\x00" * 64)
    opts = {
        "MODEL.ARCH": "resnet18", "DATA.DATASET": "coco", "DATA.ROOT": str(tiny_root), "DATA.NUM_WORKERS": 1,
        "DATA.IMAGE_SIZE": "32", "SOLVER.BATCH_SIZE": "9", "MODEL.SHUFFLE_BN_SPLITS": "3",
        "SOLVER.MAX_ITERS": "1", "MODEL.QUEUE_SIZE": "16", "MODEL.HIDDEN_DIM": "16",
        "OUTPUT_DIR": str(tmp_path / "out"),
    }  # fmt: skip
    rc = main([str(x) for kv in opts.items() for x in kv])
    assert rc == 2
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "Traceback" not in err


def test_skip_bad_images_takes_the_next_readable_sample_and_lists_it_once(tiny_root, tmp_path):
    folder = tiny_root / "imagenet" / "train"
    bad = folder / "n0001" / "zz_bad.jpg"  # sorted last in class 0: its successor is class 1's first image
    bad.write_bytes(b"not a jpeg at all")
    log = pretrain_bad_image_log(tmp_path / "bad_images.txt", limit=5)
    cfg = tiny_cfg("supervised", **{"DATA.ROOT": str(tiny_root), "DATA.DATASET": "imagenet"})
    ds = build_dataset(cfg, log)
    index = [p for p, _ in ds.samples].index(bad)
    assert ds.samples[index][1] == 0 and ds.samples[index + 1][1] == 1
    for _ in range(2):  # a second epoch meets the same file again
        image, label = ds[index]
        assert image.shape == (3, 32, 32) and label == 1
    records = read_bad_images(log.path)
    assert list(records) == [str(bad)] and "cannot identify image file" in records[str(bad)]
    assert len(log.path.read_text().splitlines()) == 1


def test_skip_bad_images_stops_past_the_limit_with_the_list(tiny_root, tmp_path):
    folder = tiny_root / "coco" / "train2017"
    for name in ("a_bad.jpg", "b_bad.jpg"):
        (folder / name).write_bytes(b"\x00" * 64)
    log = pretrain_bad_image_log(tmp_path / "bad_images.txt", limit=1)
    ds = build_dataset(tiny_cfg(**{"DATA.ROOT": str(tiny_root), "DATA.DATASET": "coco"}), log)
    first = [p.name for p, _ in ds.samples].index("a_bad.jpg")
    expected = r"2 images could not be decoded .*bad_images\.txt.*MAX_BAD_IMAGES 1"
    with pytest.raises(PretrainError, match=expected):
        ds[first]  # a_bad, then its successor b_bad: the second distinct failure passes the limit


def test_cli_trains_through_a_bad_image_when_skipping(tiny_root, tmp_path):
    bad = tiny_root / "coco" / "train2017" / "broken.jpg"
    bad.write_bytes(b"\x00" * 64)
    out = tmp_path / "out"
    opts = {
        "MODEL.ARCH": "resnet18", "DATA.DATASET": "coco", "DATA.ROOT": str(tiny_root), "DATA.NUM_WORKERS": 1,
        "DATA.IMAGE_SIZE": "32", "SOLVER.BATCH_SIZE": "9", "MODEL.SHUFFLE_BN_SPLITS": "3",
        "SOLVER.MAX_ITERS": "2", "MODEL.QUEUE_SIZE": "16", "MODEL.HIDDEN_DIM": "16",
        "DATA.SKIP_BAD_IMAGES": "True", "OUTPUT_DIR": str(out),
    }  # fmt: skip
    assert main([str(x) for kv in opts.items() for x in kv]) == 0
    assert list(read_bad_images(out / "bad_images.txt")) == [str(bad)]
    assert checkpoint.load(out / "model_final.pth")["meta"]["skipped_images"] == 1
    assert "1 unreadable images were skipped" in (out / "log.txt").read_text()


@pytest.mark.parametrize("world", [1, 2, 3])
def test_sampler_resumes_mid_epoch_and_splits_processes(world):
    def batches(rank, start):
        s = ResumableDistributedSampler(length=25, batch_per_process=2, rank=rank, world_size=world, seed=7)
        s.set_position(epoch=3, start_batch=start)
        items = list(s)
        assert len(items) == len(s)
        idx = [i for i, _ in items]
        return [idx[i : i + 2] for i in range(0, len(idx), 2)]

    full = [batches(r, 0) for r in range(world)]
    per_epoch = 25 // (2 * world)
    assert all(len(f) == per_epoch for f in full)
    flat = [i for f in full for b in f for i in b]
    assert len(flat) == len(set(flat)) == per_epoch * 2 * world
    for r in range(world):
        assert batches(r, 2) == full[r][2:]


def test_sampler_seeds_do_not_share_epochs():
    """Seed s + 1 must not replay seed s one epoch later (orders seeded by seed + epoch would)."""

    def order(seed, epoch):
        s = ResumableDistributedSampler(length=40, batch_per_process=4, rank=0, world_size=1, seed=seed)
        s.set_position(epoch=epoch, start_batch=0)
        return [i for i, _ in s]

    assert order(0, 1) != order(1, 0) and order(0, 2) != order(2, 0) and order(3, 0) == order(3, 0)


def test_augmentation_depends_only_on_sample_seed(tiny_root):
    ds = build_dataset(tiny_cfg(**{"DATA.ROOT": str(tiny_root), "DATA.DATASET": "coco"}))
    a = ds[(3, 123)]
    torch.rand(10)  # global RNG state must not matter
    b = ds[(3, 123)]
    c = ds[(3, 124)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
