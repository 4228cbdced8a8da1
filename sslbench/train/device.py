"""Choosing the device from ``--gpus`` and seeding every random number generator."""

from __future__ import annotations

import random

import torch

from sslbench.errors import UserError


def resolve_device(gpus: int | None) -> torch.device:
    """``None``: the first GPU if there is one, else the CPU; ``0``: the CPU; ``N ≥ 1``: the
    first GPU (of N: a distributed run gives each worker its own, see ``train.distributed``)."""
    available = torch.cuda.device_count()
    if gpus is None:
        return torch.device("cuda" if available else "cpu")
    if gpus == 0:
        return torch.device("cpu")
    if gpus > available:
        raise UserError(f"--gpus {gpus}: this machine has {available} CUDA GPU(s); "
                        f"use --gpus {available} or --gpus 0 for the CPU")
    return torch.device("cuda")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) from the config's one seed."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
