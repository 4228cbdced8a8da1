"""Model FLOPs of a training step, counted by PyTorch's ``FlopCounterMode``: matrix products and
convolutions, forward and backward (elementwise operations, normalisation and the optimizer are
not counted). A run counts them once, before it trains, and stores them with its results."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn


def training_flops_per_image(method: nn.Module, views: Sequence[torch.Tensor]) -> float:
    """FLOPs of one ``training_step`` plus its backward pass, per image of the batch (each image
    gives all its views); counted once on ``views`` (a small batch is enough: the cost per image
    of the encoder does not depend on the batch)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = method.training
    method.train()
    with FlopCounterMode(display=False) as counter:
        loss, _ = method.training_step(list(views))
        loss.backward()
    method.zero_grad(set_to_none=True)
    method.train(was_training)
    return counter.get_total_flops() / views[0].shape[0]


def count_without_side_effects(method: nn.Module, views: Sequence[torch.Tensor]) -> float:
    """:func:`training_flops_per_image` on a copy of ``method``, with the random generators put
    back: the run that is about to train sees no trace of the count (its BatchNorm statistics,
    queues and random streams are untouched)."""
    devices = [views[0].device] if views[0].device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return training_flops_per_image(copy.deepcopy(method), views)
