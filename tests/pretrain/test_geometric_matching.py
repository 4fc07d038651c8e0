"""DenseCL correspondence by the known crop/flip geometry: match_geometric, recorded view params, model."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pretrain_testutils import tiny_cfg
from torch.utils.data import DataLoader
from torchvision import transforms as T

from pretrain.data import MoCoV2View, build_dataset, mocov2_view_transform
from pretrain.engine import Trainer
from pretrain.errors import PretrainError
from pretrain.losses import match_geometric
from pretrain.methods import build_model


def box(x0, y0, x1, y1, flipped=False):
    return torch.tensor([[x0, y0, x1, y1, float(flipped)]])


def reference_match(q_box: list[float], k_box: list[float], grid_q: int, grid_k: int) -> list[int]:
    """One query cell at a time, in plain Python: the slow, obviously-correct version."""
    qx0, qy0, qx1, qy1, q_flip = q_box
    kx0, ky0, kx1, ky1, k_flip = k_box
    out = []
    for i in range(grid_q):
        for j in range(grid_q):
            u, v = (j + 0.5) / grid_q, (i + 0.5) / grid_q
            if q_flip:
                u = 1 - u
            x, y = qx0 + u * (qx1 - qx0), qy0 + v * (qy1 - qy0)
            uk, vk = (x - kx0) / (kx1 - kx0), (y - ky0) / (ky1 - ky0)
            if k_flip:
                uk = 1 - uk
            row = min(max(math.floor(vk * grid_k), 0), grid_k - 1)
            col = min(max(math.floor(uk * grid_k), 0), grid_k - 1)
            out.append(row * grid_k + col)
    return out


def random_boxes(n: int, g: torch.Generator, size: float = 200.0) -> torch.Tensor:
    corners = torch.rand(n, 2, 2, generator=g) * size  # (N, 2 points, xy)
    lo, hi = corners.min(dim=1).values, corners.max(dim=1).values + 1.0  # (N, 2)
    flips = (torch.rand(n, 1, generator=g) < 0.5).float()
    return torch.cat([lo, hi, flips], dim=1)  # (N, 5)


@pytest.mark.parametrize(("grid_q", "grid_k"), [(1, 1), (2, 3), (3, 2), (7, 7)])
def test_matches_per_point_reference(grid_q, grid_k):
    g = torch.Generator().manual_seed(grid_q * 10 + grid_k)
    q_boxes, k_boxes = random_boxes(64, g), random_boxes(64, g)
    got = match_geometric(q_boxes, k_boxes, grid_q, grid_k)
    assert got.dtype == torch.long and got.shape == (64, grid_q * grid_q)
    expected = [reference_match(q.tolist(), k.tolist(), grid_q, grid_k) for q, k in zip(q_boxes, k_boxes)]
    assert got.tolist() == expected
    assert {0.0, 1.0} <= set(q_boxes[:, 4].tolist()) and {0.0, 1.0} <= set(k_boxes[:, 4].tolist())


def test_hand_checked_left_half_into_whole_image():
    # 100 x 100 image; query = left half, key = whole image, S = 2. Query cell centres in the image:
    # x = 12.5, 37.5 (both in the key's left column), y = 25, 75 (key rows 0 and 1).
    got = match_geometric(box(0, 0, 50, 100), box(0, 0, 100, 100), 2, 2)
    assert got.tolist() == [[0, 0, 2, 2]]
    # Key flipped: the image's left column is the key view's right column.
    got = match_geometric(box(0, 0, 50, 100), box(0, 0, 100, 100, flipped=True), 2, 2)
    assert got.tolist() == [[1, 1, 3, 3]]


@pytest.mark.parametrize(
    ("q_flip", "k_flip", "cols"),
    [
        (False, False, [0, 0, 1, 1]),
        (True, False, [1, 1, 0, 0]),
        (False, True, [3, 3, 2, 2]),
        (True, True, [2, 2, 3, 3]),
    ],
)
def test_hand_checked_flips(q_flip, k_flip, cols):
    # Query = left half of a 100 x 100 image, key = whole image, S = 4: query column centres are at
    # image x = 6.25, 18.75, 31.25, 43.75, i.e. key columns 0, 0, 1, 1 before any flip; a query flip reverses
    # the query columns, a key flip maps key column c to 3 - c. Rows are unchanged (same height).
    got = match_geometric(box(0, 0, 50, 100, q_flip), box(0, 0, 100, 100, k_flip), 4, 4)
    assert got.tolist() == [[row * 4 + c for row in range(4) for c in cols]]


def test_whole_image_flip_mirrors_columns():
    same = match_geometric(box(0, 0, 100, 100, True), box(0, 0, 100, 100, False), 2, 2)
    assert same.tolist() == [[1, 0, 3, 2]]


def test_points_outside_the_key_crop_clamp_to_the_nearest_cell():
    # Query = whole image, 4 x 4; key = the centre square 25..75, 2 x 2. Query centres at x = 12.5 and
    # 87.5 lie outside the key crop (key u = -0.25, 1.25) and take the nearest border column.
    got = match_geometric(box(0, 0, 100, 100), box(25, 25, 75, 75), 4, 2)
    row_of = [0, 0, 1, 1]
    assert got.tolist() == [[row_of[i] * 2 + row_of[j] for i in range(4) for j in range(4)]]


@pytest.mark.parametrize("flipped", [False, True])
@pytest.mark.parametrize("grid", [1, 3, 7])
def test_identical_views_map_to_identity(grid, flipped):
    g = torch.Generator().manual_seed(grid)
    boxes = random_boxes(8, g)
    boxes[:, 4] = float(flipped)
    assert torch.equal(
        match_geometric(boxes, boxes.clone(), grid, grid), torch.arange(grid * grid).expand(8, -1)
    )


def test_bad_boxes_are_clear_errors():
    with pytest.raises(ValueError, match=r"q_boxes must be \(N, 5\)"):
        match_geometric(torch.zeros(2, 4), torch.zeros(2, 4), 2, 2)
    with pytest.raises(ValueError, match=r"k_boxes has 1 empty crop box\(es\).*row 0"):
        match_geometric(box(0, 0, 10, 10), box(5, 0, 5, 10), 2, 2)


# --- the recorded view parameters ----------------------------------------------------------------------


def coordinate_image(width: int = 240, height: int = 180) -> Image.Image:
    """Red = column, green = row of each pixel (so a pixel says where in the image it came from)."""
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    rgb = np.stack([xs, ys, np.zeros_like(xs)], axis=2).astype(np.uint8)
    return Image.fromarray(rgb)


def image_coords_at(view: torch.Tensor, points: torch.Tensor, cfg) -> torch.Tensor:
    """Image (x, y) encoded by a normalised view (3, S, S) at view points (P, 2) in [0, 1], bilinear."""
    mean, std = torch.tensor(cfg.DATA.MEAN).view(3, 1, 1), torch.tensor(cfg.DATA.STD).view(3, 1, 1)
    pixels = (view * std + mean) * 255.0  # (3, S, S) back to 0..255
    grid = (points * 2 - 1).view(1, 1, -1, 2)  # (1, 1, P, 2) in grid_sample's [-1, 1]
    sampled = F.grid_sample(pixels[None], grid, mode="bilinear", align_corners=False)  # (1, 3, 1, P)
    return sampled[0, :2, 0].t() + 0.5  # (P, 2): pixel p holds value p and covers [p, p + 1)


def cell_centres(grid: int) -> torch.Tensor:
    c = (torch.arange(grid) + 0.5) / grid
    v, u = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([u.flatten(), v.flatten()], dim=1)  # (S*S, 2) row-major (u, v)


def test_recorded_crop_and_flip_match_the_pixels(monkeypatch):
    """The view's pixels must come from where its params say; mapped key cells must see the same point."""
    cfg = tiny_cfg(**{"DATA.IMAGE_SIZE": 64})
    view_tf = mocov2_view_transform(cfg)
    monkeypatch.setattr(view_tf, "photometric", lambda img: img)  # colour changes would hide the coordinates
    img, grid = coordinate_image(), 4
    centres = cell_centres(grid)  # (16, 2)
    torch.manual_seed(0)
    flips, checked = set(), 0
    for _ in range(12):
        view_q, params_q = view_tf.sample(img)
        view_k, params_k = view_tf.sample(img)
        flips |= {bool(params_q[4]), bool(params_k[4])}
        x0, y0, x1, y1, flipped = params_q.tolist()
        u = 1 - centres[:, 0] if flipped else centres[:, 0]
        expected = torch.stack([x0 + u * (x1 - x0), y0 + centres[:, 1] * (y1 - y0)], dim=1)  # (16, 2)
        torch.testing.assert_close(image_coords_at(view_q, centres, cfg), expected, atol=1.5, rtol=0)

        match = match_geometric(params_q[None], params_k[None], grid, grid)[0]  # (16,)
        seen_by_key = image_coords_at(view_k, centres[match], cfg)  # (16, 2)
        kx0, ky0, kx1, ky1, _ = params_k.tolist()
        inside = (
            (expected[:, 0] >= kx0)
            & (expected[:, 0] < kx1)
            & (expected[:, 1] >= ky0)
            & (expected[:, 1] < ky1)
        )
        half_cell = torch.tensor([(kx1 - kx0) / (2 * grid), (ky1 - ky0) / (2 * grid)])
        error = (seen_by_key - expected).abs()[inside]  # (P_inside, 2)
        assert (error <= half_cell + 1.5).all(), (
            f"key cell off by {error.max():.1f} px (half cell {half_cell})"
        )
        checked += int(inside.sum())
    assert flips == {False, True} and checked > 50


def test_view_transform_draws_exactly_as_the_torchvision_pipeline():
    cfg = tiny_cfg(**{"DATA.IMAGE_SIZE": 32})
    view_tf = mocov2_view_transform(cfg)
    assert isinstance(view_tf, MoCoV2View)
    torchvision_pipeline = T.Compose(
        [
            T.RandomResizedCrop(32, scale=(0.2, 1.0)),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([T.GaussianBlur(3, sigma=(0.1 * 32 / 224, 2.0 * 32 / 224))], p=0.5),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(cfg.DATA.MEAN, cfg.DATA.STD),
        ]
    )
    img = coordinate_image(60, 50)
    for seed in range(6):
        torch.manual_seed(seed)
        ours, params = view_tf.sample(img)
        torch.manual_seed(seed)
        assert torch.equal(ours, torchvision_pipeline(img)) and params.shape == (5,)
        torch.manual_seed(seed)
        assert torch.equal(view_tf(img), ours)


def test_dataset_returns_view_params_only_for_geometry(tiny_root):
    base = {"DATA.ROOT": str(tiny_root), "DATA.DATASET": "coco"}
    assert len(build_dataset(tiny_cfg("densecl", **base))[0]) == 3
    assert len(build_dataset(tiny_cfg("mocov2", **base, **{"MODEL.DENSECL.MATCHING": "geometry"}))[0]) == 3
    ds = build_dataset(tiny_cfg("densecl", **base, **{"MODEL.DENSECL.MATCHING": "geometry"}))
    view_q, view_k, view_params, label = next(iter(DataLoader(ds, batch_size=4)))
    assert view_q.shape == view_k.shape == (4, 3, 32, 32) and view_params.shape == (4, 2, 5)
    assert label.tolist() == [-1] * 4
    x0, y0, x1, y1, flipped = view_params.unbind(dim=2)  # each (4, 2); images are 40 wide, 48 high
    assert (x0 >= 0).all() and (x1 > x0).all() and (x1 <= 40).all() and (y1 > y0).all() and (y1 <= 48).all()
    assert set(flipped.flatten().tolist()) <= {0.0, 1.0}


# --- DenseCL with geometric matching -------------------------------------------------------------------


@pytest.mark.parametrize("grid", [1, 2, 3])
def test_densecl_geometry_forward_is_finite(grid):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(**{"MODEL.DENSECL.GRID_SIZE": grid, "MODEL.DENSECL.MATCHING": "geometry"}))
    g = torch.Generator().manual_seed(grid)
    x_q, x_k = torch.randn(2, 3, 64, 64, generator=g), torch.randn(2, 3, 64, 64, generator=g)
    view_params = torch.stack([random_boxes(2, g), random_boxes(2, g)], dim=1)  # (2, 2, 5)
    out = model.train()(x_q, x_k, view_params=view_params)
    assert set(out) == {"loss_global", "loss_dense", "loss"}
    assert all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    assert model.encoder_q.dense_head.mlp[0].weight.grad.abs().sum() > 0


def test_geometry_uses_the_geometric_match():
    """Same crop box, key mirrored: the geometric positive of query cell (r, c) is key cell (r, S-1-c),
    whatever the two (unrelated) inputs show; feature matching on those inputs finds other cells."""
    grid = 3
    model = build_model(
        tiny_cfg(**{"MODEL.DENSECL.GRID_SIZE": grid, "MODEL.DENSECL.MATCHING": "geometry"})
    ).eval()
    g = torch.Generator().manual_seed(0)
    x_q, x_k = torch.randn(2, 3, 64, 64, generator=g), torch.randn(2, 3, 64, 64, generator=g)
    box = [10.0, 20.0, 90.0, 70.0]
    view_params = torch.tensor([[[*box, 0.0], [*box, 1.0]]]).expand(2, 2, 5)  # (N, 2, 5): query, key
    query, keys = model.encoder_q(x_q), model.encode_keys(x_k)
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    mirrored = (rows * grid + (grid - 1 - cols)).reshape(-1).expand(2, grid * grid)  # (N, S*S)
    assert torch.equal(model.match(query, keys, view_params), mirrored)
    model.matching = "feature"
    assert not torch.equal(model.match(query, keys, view_params), mirrored)


def test_geometry_without_view_params_is_a_clear_error():
    model = build_model(tiny_cfg(**{"MODEL.DENSECL.GRID_SIZE": 2, "MODEL.DENSECL.MATCHING": "geometry"}))
    x = torch.randn(2, 3, 64, 64)
    with pytest.raises(PretrainError, match="MATCHING is 'geometry' but the batch has no valid view_params"):
        model(x, x)
    with pytest.raises(PretrainError, match=r"got shape \(2, 5\)"):
        model(x, x, view_params=torch.zeros(2, 5))
    with pytest.raises(PretrainError, match=r"MODEL\.DENSECL\.MATCHING 'geometric' is unknown"):
        build_model(tiny_cfg(**{"MODEL.DENSECL.MATCHING": "geometric"}))


def test_trainer_passes_view_params(tiny_root, tmp_path):
    cfg = tiny_cfg(
        **{"DATA.ROOT": str(tiny_root), "DATA.DATASET": "coco", "OUTPUT_DIR": str(tmp_path / "geo")},
        **{"MODEL.DENSECL.MATCHING": "geometry", "MODEL.DENSECL.GRID_SIZE": 2, "SOLVER.MAX_ITERS": 2},
    )
    cfg.freeze()
    Trainer(cfg).train()
    records = [json.loads(line) for line in (tmp_path / "geo" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records] == [1, 2] and all(math.isfinite(r["loss_dense"]) for r in records)
