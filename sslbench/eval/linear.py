"""Linear probe: a linear classifier on frozen encoder features (the standard SSL protocol).

Features are standardised with the train split's mean and std (what a BatchNorm without affine
parameters in front of the layer does at evaluation), then a single ``nn.Linear`` is trained with
AdamW and a cosine schedule on mini-batches; top-1 (and top-5 with more than 5 classes) is
measured on the test split. Options, as in the usual recipes:

- ``batchnorm``: a ``BatchNorm1d`` (no affine) in front of the layer, trained on batch statistics
  (He et al., "Masked Autoencoders Are Scalable Vision Learners", 2022, sec. A.2 / MoCo v3);
- ``augment``: training features are recomputed each step from augmented images through the
  frozen encoder (``augmented_features``) instead of the precomputed clean ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sslbench.config import LinearEvalConfig
from sslbench.seeds import Stream, stream_seed

# (indices into the train split, generator) → features of augmented train images, on `device`
AugmentedFeatures = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    topk = logits.topk(k, dim=1).indices
    return (topk == labels[:, None]).any(dim=1).float().mean().item()


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                 test_y: torch.Tensor, num_classes: int, cfg: LinearEvalConfig, seed: int = 0,
                 device: torch.device | None = None,
                 augmented_features: AugmentedFeatures | None = None) -> dict[str, float]:
    """Train a linear classifier on ``train_x`` and return top-1/top-5 on ``test_x`` (fractions)."""
    device = device or torch.device("cpu")
    mean, std = train_x.mean(0).to(device), train_x.std(0).clamp_min(1e-6).to(device)
    train_x = ((train_x.to(device) - mean) / std)
    test_x = ((test_x.to(device) - mean) / std)
    train_y, test_y = train_y.to(device), test_y.to(device)

    torch.manual_seed(seed)  # the layer's initialisation
    gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator(device=device).manual_seed(stream_seed(seed, Stream.AUGMENT))
    dim = train_x.shape[1]
    head: nn.Module = nn.Linear(dim, num_classes)
    if cfg.batchnorm:
        head = nn.Sequential(nn.BatchNorm1d(dim, affine=False), head)
    head = head.to(device).train()
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = train_x.shape[0]
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs * steps_per_epoch)
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen).to(device)
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            if augmented_features is None:
                x = train_x[idx]
            else:
                x = (augmented_features(idx, aug_gen).to(device) - mean) / std
            if cfg.batchnorm and x.shape[0] < 2:
                continue  # batch statistics need two samples
            loss = F.cross_entropy(head(x), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()

    head.eval()
    with torch.no_grad():
        test_logits, train_logits = head(test_x), head(train_x)
    result = {
        "top1": topk_accuracy(test_logits, test_y, 1),
        "train_top1": topk_accuracy(train_logits, train_y, 1),
    }
    if num_classes > 5:
        result["top5"] = topk_accuracy(test_logits, test_y, 5)
    return result
