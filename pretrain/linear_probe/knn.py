"""Weighted k-nearest-neighbour classification on L2-normalised features.

Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018,
Sec. 3.4: the k train features with the highest cosine similarity s_i to a query each vote for their
class with weight exp(s_i / tau); the class with the largest summed weight is the prediction.
"""

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_class_scores(
    query: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 256,
    bank_is_normalized: bool = False,
) -> torch.Tensor:
    """Summed vote weights per class, (Q, num_classes).

    query (Q, C) and bank (N, C) are L2-normalised here, unless `bank_is_normalized` says the bank already
    is (then it is used as it is, in its own dtype, e.g. a float16 ImageNet bank that a normalised float32
    copy would double); bank_labels (N,) int64. k is capped at N. Queries are processed `chunk_size` at a
    time, so memory is chunk_size x N, not Q x N.
    """
    query = F.normalize(query.float(), dim=1)
    if not bank_is_normalized:
        bank = F.normalize(bank.float(), dim=1)
    k = min(k, bank.shape[0])
    scores = []
    for chunk in query.split(chunk_size):
        sim = (chunk.to(bank.dtype) @ bank.T).float()  # (q, N) cosine similarities
        top_sim, top_idx = sim.topk(k, dim=1)  # (q, k)
        weights = (top_sim / temperature).exp()  # (q, k)
        votes = torch.zeros(chunk.shape[0], num_classes, device=query.device)
        scores.append(votes.scatter_add_(1, bank_labels[top_idx], weights))  # (q, num_classes)
    return torch.cat(scores)  # (Q, num_classes)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...]) -> list[float]:
    """Percent (0-100) of rows whose label is among the top-k scores, per k (k capped at the class count)."""
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices  # (Q, kmax)
    hit = top == labels[:, None]  # (Q, kmax)
    return [100.0 * hit[:, :k].any(dim=1).float().mean().item() for k in ks]
