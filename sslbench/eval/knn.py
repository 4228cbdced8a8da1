"""Weighted k-nearest-neighbour classifier on frozen features.

Wu, Xiong, Yu, Lin, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination"
(InstDisc), CVPR 2018, sec. 3.4: features are l2-normalised, the k training samples with the
highest cosine similarity s_i to a test sample vote for their class with weight exp(s_i / T).
k = 200 and T = 0.1 as in InstDisc, lightly and solo-learn.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_scores(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
               num_classes: int, k: int = 200, temperature: float = 0.1,
               chunk_size: int = 1024) -> torch.Tensor:
    """Class scores [N_test, num_classes]: Σ over the k nearest neighbours of exp(s_i / T)."""
    train_x = F.normalize(train_x.float(), dim=1)
    test_x = F.normalize(test_x.float(), dim=1)
    k = min(k, train_x.shape[0])
    out = []
    for start in range(0, test_x.shape[0], chunk_size):
        sim = test_x[start:start + chunk_size] @ train_x.T  # cosine similarity
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(sim.shape[0], num_classes, device=sim.device, dtype=weights.dtype)
        out.append(votes.scatter_add_(1, train_y[top_idx], weights))
    return torch.cat(out)


def knn_classify(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                 test_y: torch.Tensor, num_classes: int, k: int = 200,
                 temperature: float = 0.1) -> dict[str, float]:
    """Weighted kNN top-1 (and top-5 with more than 5 classes) on the test set, as fractions."""
    scores = knn_scores(train_x, train_y, test_x, num_classes, k, temperature)
    ranked = scores.argsort(dim=1, descending=True)
    result = {"top1": (ranked[:, 0] == test_y).float().mean().item()}
    if num_classes > 5:
        result["top5"] = (ranked[:, :5] == test_y[:, None]).any(dim=1).float().mean().item()
    return result
