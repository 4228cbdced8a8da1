"""Top and bottom halves of images (Tschannen et al. 2020's two views)."""

from __future__ import annotations

import pytest
import torch

from sslbench.data.views import half_height, image_half


def test_halves_split_the_rows() -> None:
    x = torch.arange(2 * 1 * 5 * 3).view(2, 1, 5, 3)
    top, bottom = image_half(x, "top"), image_half(x, "bottom")
    assert top.shape == (2, 1, 2, 3) and bottom.shape == (2, 1, 3, 3)
    assert torch.equal(torch.cat([top, bottom], dim=2), x)
    assert half_height(5, "top") == 2 and half_height(5, "bottom") == 3
    assert image_half(torch.zeros(4, 3, 28, 28), "top").shape == (4, 3, 14, 28)
    with pytest.raises(ValueError):
        image_half(x, "left")
