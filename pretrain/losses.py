"""Contrastive losses as pure functions.

InfoNCE follows MoCo (He et al., CVPR 2020, Eq. 1; MoCo-v2 arXiv 2003.04297): one positive at index 0
of the logits, negatives from a queue. The dense variant and the correspondence rule follow DenseCL
(Wang et al., CVPR 2021, Sec. 3.2-3.3, Eq. 2-3): positives are matched by cosine similarity of backbone
features, every position of the S x S grid is one InfoNCE term. `match_geometric` is the ablation that
pairs positions through the known crop/flip of the two views instead of by feature similarity.
"""

import torch
import torch.nn.functional as F


def _fp32(device: torch.device):
    """Autocast off: similarities, logits and losses in fp32 even inside the training step's autocast, as
    MoCo and DenseCL compute them (bfloat16 keeps ~3 significant digits of a cosine similarity)."""
    return torch.autocast(device_type=device.type, enabled=False)


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean InfoNCE over the batch. q, k: (N, C) L2-normalised; queue: (K, C) L2-normalised negatives."""
    with _fp32(q.device):
        q, k, queue = q.float(), k.float(), queue.float()
        l_pos = (q * k).sum(dim=1, keepdim=True)  # (N, 1)
        l_neg = q @ queue.t()  # (N, K)
        logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # (N, 1 + K)
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, labels)


def _flatten_positions(feat: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) or (N, C, P) -> (N, C, P)."""
    if feat.dim() == 4:
        return feat.flatten(2)
    if feat.dim() != 3:
        raise ValueError(f"expected a (N, C, H, W) or (N, C, P) feature map, got shape {tuple(feat.shape)}")
    return feat


def match_dense(q_feat: torch.Tensor, k_feat: torch.Tensor) -> torch.Tensor:
    """Index of the most similar key position for every query position (DenseCL Eq. 2).

    q_feat, k_feat: (N, C, S*S) or (N, C, H, W) backbone features (normalised here).
    Returns a LongTensor (N, P_q) of indices into the P_k key positions, by cosine similarity.
    """
    with _fp32(q_feat.device):
        q = F.normalize(_flatten_positions(q_feat).float(), dim=1)  # (N, C, Pq)
        k = F.normalize(_flatten_positions(k_feat).float(), dim=1)  # (N, C, Pk)
        similarity = torch.einsum("ncp,ncr->npr", q, k)  # (N, Pq, Pk)
        return similarity.argmax(dim=2)


def _check_boxes(boxes: torch.Tensor, name: str) -> None:
    if boxes.dim() != 2 or boxes.shape[1] != 5:
        raise ValueError(f"{name} must be (N, 5) = (x0, y0, x1, y1, flipped), got shape {tuple(boxes.shape)}")
    empty = ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).nonzero().flatten()
    if empty.numel():
        first = int(empty[0])
        raise ValueError(
            f"{name} has {empty.numel()} empty crop box(es) (needs x1 > x0 and y1 > y0), "
            f"e.g. row {first}: {boxes[first].tolist()}"
        )


def match_geometric(q_boxes: torch.Tensor, k_boxes: torch.Tensor, grid_q: int, grid_k: int) -> torch.Tensor:
    """Key cell that sees the same image point as each query cell centre (geometric DenseCL ablation).

    Replaces the feature argmax of DenseCL Sec. 3.3 by the known geometry of the two views. q_boxes,
    k_boxes: (N, 5) per view (x0, y0, x1, y1, flipped), the crop box in original-image pixels and the
    horizontal-flip flag (pretrain.data.VIEW_PARAMS). The centre of query cell (i, j) of the
    grid_q x grid_q grid, at view coordinates ((j + 0.5) / grid_q, (i + 0.5) / grid_q), is un-flipped,
    mapped to image coordinates through the query box, then into the key view through the key box and
    flipped if the key view was. Its key cell is (floor(v * grid_k), floor(u * grid_k)), each clamped to
    [0, grid_k - 1]: a point outside the key crop (the views need not overlap) is paired with the nearest
    key cell on the crop border. Returns a LongTensor (N, grid_q * grid_q) of row-major key cell indices.
    The cells are those of DenseHead's adaptive-pooled grid: cell i spans [i / S, (i + 1) / S) of the view
    exactly when S divides the C5 size, approximately otherwise.
    """
    _check_boxes(q_boxes, "q_boxes")
    _check_boxes(k_boxes, "k_boxes")
    if k_boxes.shape != q_boxes.shape:
        raise ValueError(f"q_boxes {tuple(q_boxes.shape)} and k_boxes {tuple(k_boxes.shape)} differ in shape")
    q, k = q_boxes.float(), k_boxes.float()
    centres = (torch.arange(grid_q, device=q.device, dtype=torch.float32) + 0.5) / grid_q  # (Sq,)
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    u, v = u.reshape(1, -1), v.reshape(1, -1)  # (1, Sq*Sq) query view coordinates, row-major
    u = torch.where(q[:, 4:5] > 0.5, 1.0 - u, u)  # (N, Sq*Sq) before the query flip
    x = q[:, 0:1] + u * (q[:, 2:3] - q[:, 0:1])  # (N, Sq*Sq) image coordinates
    y = q[:, 1:2] + v * (q[:, 3:4] - q[:, 1:2])  # (N, Sq*Sq)
    u_k = (x - k[:, 0:1]) / (k[:, 2:3] - k[:, 0:1])  # (N, Sq*Sq) key view coordinates before its flip
    v_k = (y - k[:, 1:2]) / (k[:, 3:4] - k[:, 1:2])  # (N, Sq*Sq)
    u_k = torch.where(k[:, 4:5] > 0.5, 1.0 - u_k, u_k)
    col = (u_k * grid_k).floor().clamp(0, grid_k - 1).long()  # (N, Sq*Sq)
    row = (v_k * grid_k).floor().clamp(0, grid_k - 1).long()  # (N, Sq*Sq)
    return row * grid_k + col


def dense_info_nce(
    q_dense: torch.Tensor,
    k_dense: torch.Tensor,
    match_idx: torch.Tensor,
    queue: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Mean dense InfoNCE over all N * P query positions (DenseCL Eq. 3).

    q_dense, k_dense: (N, C, P) L2-normalised dense-head vectors; match_idx: (N, P) key position matched
    to each query position; queue: (K, C) L2-normalised negatives (pooled dense keys of past images).
    """
    with _fp32(q_dense.device):
        q_dense, k_dense, queue = q_dense.float(), k_dense.float(), queue.float()
        n, c, p = q_dense.shape
        k_pos = torch.gather(k_dense, 2, match_idx.unsqueeze(1).expand(n, c, p))  # (N, C, P)
        l_pos = (q_dense * k_pos).sum(dim=1).unsqueeze(2)  # (N, P, 1)
        l_neg = torch.einsum("ncp,kc->npk", q_dense, queue)  # (N, P, K)
        logits = torch.cat([l_pos, l_neg], dim=2).reshape(n * p, -1) / temperature  # (N*P, 1 + K)
        labels = torch.zeros(n * p, dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, labels)
