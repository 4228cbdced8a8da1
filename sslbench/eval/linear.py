"""Linear probe: a linear classifier on frozen encoder features (the standard SSL protocol).

Features are standardised with the train split's mean and std (what a BatchNorm without affine
parameters in front of the layer does at evaluation), then a single ``nn.Linear`` is trained with
AdamW and a cosine schedule on mini-batches; top-1 (and top-5 with more than 5 classes) is
measured on the test split.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sslbench.config import LinearEvalConfig


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    topk = logits.topk(k, dim=1).indices
    return (topk == labels[:, None]).any(dim=1).float().mean().item()


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                 test_y: torch.Tensor, num_classes: int, cfg: LinearEvalConfig, seed: int = 0,
                 device: torch.device | None = None) -> dict[str, float]:
    """Train a linear classifier on ``train_x`` and return top-1/top-5 on ``test_x`` (fractions)."""
    device = device or torch.device("cpu")
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x = ((train_x - mean) / std).to(device)
    test_x = ((test_x - mean) / std).to(device)
    train_y, test_y = train_y.to(device), test_y.to(device)

    gen = torch.Generator().manual_seed(seed)
    layer = nn.Linear(train_x.shape[1], num_classes).to(device)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = train_x.shape[0]
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs * steps_per_epoch)
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen).to(device)
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            loss = F.cross_entropy(layer(train_x[idx]), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()

    with torch.no_grad():
        test_logits, train_logits = layer(test_x), layer(train_x)
    result = {
        "top1": topk_accuracy(test_logits, test_y, 1),
        "train_top1": topk_accuracy(train_logits, train_y, 1),
    }
    if num_classes > 5:
        result["top5"] = topk_accuracy(test_logits, test_y, 5)
    return result
