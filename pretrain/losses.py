"""Contrastive losses as pure functions.

InfoNCE follows MoCo (He et al., CVPR 2020, Eq. 1; MoCo-v2 arXiv 2003.04297): one positive at index 0
of the logits, negatives from a queue. The dense variant and the correspondence rule follow DenseCL
(Wang et al., CVPR 2021, Sec. 3.2-3.3, Eq. 2-3): positives are matched by cosine similarity of backbone
features, every position of the S x S grid is one InfoNCE term.
"""

import torch
import torch.nn.functional as F


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean InfoNCE over the batch. q, k: (N, C) L2-normalised; queue: (K, C) L2-normalised negatives."""
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
    q = F.normalize(_flatten_positions(q_feat).float(), dim=1)  # (N, C, Pq)
    k = F.normalize(_flatten_positions(k_feat).float(), dim=1)  # (N, C, Pk)
    similarity = torch.einsum("ncp,ncr->npr", q, k)  # (N, Pq, Pk)
    return similarity.argmax(dim=2)


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
    q_dense, k_dense, queue = q_dense.float(), k_dense.float(), queue.float()
    n, c, p = q_dense.shape
    k_pos = torch.gather(k_dense, 2, match_idx.unsqueeze(1).expand(n, c, p))  # (N, C, P)
    l_pos = (q_dense * k_pos).sum(dim=1).unsqueeze(2)  # (N, P, 1)
    l_neg = torch.einsum("ncp,kc->npk", q_dense, queue)  # (N, P, K)
    logits = torch.cat([l_pos, l_neg], dim=2).reshape(n * p, -1) / temperature  # (N*P, 1 + K)
    labels = torch.zeros(n * p, dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, labels)
