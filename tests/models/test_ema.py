import math

import pytest
import torch
from torch import nn

from sslbench.models import cosine_ema_decay, ema_update


def test_cosine_schedule_end_points_and_midpoint():
    assert cosine_ema_decay(0.99, 0, 100) == pytest.approx(0.99)
    assert cosine_ema_decay(0.99, 100, 100) == pytest.approx(1.0)
    assert cosine_ema_decay(0.99, 50, 100) == pytest.approx(0.995)
    # BYOL §3.2: τ_k = 1 − (1 − τ_base)(cos(πk/K) + 1)/2
    k, total = 30, 100
    assert cosine_ema_decay(0.996, k, total) == pytest.approx(
        1 - (1 - 0.996) * (math.cos(math.pi * k / total) + 1) / 2)
    values = [cosine_ema_decay(0.9, s, 20) for s in range(21)]
    assert values == sorted(values)


def test_ema_update_is_the_convex_combination():
    torch.manual_seed(0)
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    t0 = [p.clone() for p in target.parameters()]
    ema_update(target, online, 0.75)
    for t_new, t_old, o in zip(target.parameters(), t0, online.parameters(), strict=True):
        assert torch.allclose(t_new, 0.75 * t_old + 0.25 * o)
    ema_update(target, online, 0.0)  # decay 0: the target becomes the online network
    for t_new, o in zip(target.parameters(), online.parameters(), strict=True):
        assert torch.equal(t_new, o)
