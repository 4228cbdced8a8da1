"""Critics score every pair of a batch: [i, j] = f(x_i, y_j), checked pair by pair."""

from __future__ import annotations

import pytest
import torch

from sslbench.mi import critics
from sslbench.mi.critics import BilinearCritic, ConcatCritic, SeparableCritic, build_critic


def test_bilinear_by_hand() -> None:
    c = BilinearCritic(2, 3)
    with torch.no_grad():
        c.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, -1.0, 0.0]]))
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0, 5.0], [0.0, 1.0, 0.0]])
    assert torch.allclose(c(x, y), torch.tensor([[3.0 + 10.0 - 8.0, -2.0]]))


def test_concat_critic_matches_the_mlp_on_each_concatenated_pair() -> None:
    torch.manual_seed(0)
    c = ConcatCritic(3, 4, hidden_dims=(16, 8))
    x, y = torch.randn(11, 3), torch.randn(11, 4)
    scores = c(x, y)
    for i in (0, 5, 10):
        for j in (0, 7):
            h = torch.relu(c.hidden(torch.cat([x[i], y[j]])))
            direct = c.head[2](torch.relu(c.head[0](h)))
            assert torch.allclose(scores[i, j], direct.squeeze(), atol=1e-5)


def test_concat_critic_rows_in_chunks_that_do_not_divide_k(
        monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    c = ConcatCritic(3, 4)
    x, y = torch.randn(11, 3), torch.randn(11, 4)
    whole = c(x, y)
    monkeypatch.setattr(critics, "CHUNK_ELEMENTS", 3 * 11 * 200)  # 3 rows per chunk
    assert torch.allclose(c(x, y), whole, atol=1e-6)
    assert torch.allclose(whole.diagonal(), c.pair(x, y), atol=1e-5)


def test_separable_critic_is_an_inner_product_of_embeddings() -> None:
    torch.manual_seed(0)
    c = SeparableCritic(3, 4, hidden_dim=100, embedding_dim=100)
    x, y = torch.randn(6, 3), torch.randn(5, 4)
    assert c(x, y).shape == (6, 5)
    assert torch.allclose(c(x, y)[2, 3], c.phi(x[2]) @ c.psi(y[3]), atol=1e-5)
    assert c.phi[-1].out_features == 100 and c.phi[0].out_features == 100


def test_the_paper_sizes_on_100_d_codes() -> None:
    """Tschannen et al.'s critics on 100-d codes: bilinear 100·100; separable two MLPs
    100 → 100 → 100, 2·(100·100 + 100 + 100·100 + 100); MLP 200 → 200 → 1, 200·200 + 200 + 201.
    The MLP critic is the most expressive at (about) the separable one's size."""
    sizes = {name: sum(p.numel() for p in build_critic(name, 100, 100).parameters())
             for name in ("bilinear", "separable", "mlp")}
    assert sizes == {"bilinear": 10_000, "separable": 40_400, "mlp": 40_401}


def test_build_critic_names() -> None:
    assert isinstance(build_critic("bilinear", 4, 4), BilinearCritic)
    assert isinstance(build_critic("separable", 4, 4), SeparableCritic)
    assert isinstance(build_critic("mlp", 4, 4), ConcatCritic)
