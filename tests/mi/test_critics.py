"""Critics score every pair of a batch: [i, j] = f(x_i, y_j), checked pair by pair."""

from __future__ import annotations

import torch

from sslbench.mi.critics import BilinearCritic, ConcatCritic, SeparableCritic, build_critic


def test_bilinear_by_hand() -> None:
    c = BilinearCritic(2, 3)
    with torch.no_grad():
        c.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, -1.0, 0.0]]))
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0, 5.0], [0.0, 1.0, 0.0]])
    assert torch.allclose(c(x, y), torch.tensor([[3.0 + 10.0 - 8.0, -2.0]]))


def test_concat_critic_matches_the_mlp_on_each_concatenated_pair() -> None:
    torch.manual_seed(0)
    c = ConcatCritic(3, 4, hidden_dim=16, chunk=5)  # chunks that do not divide K
    x, y = torch.randn(11, 3), torch.randn(11, 4)
    scores = c(x, y)
    for i in (0, 5, 10):
        for j in (0, 7):
            direct = c.out(torch.relu(c.hidden(torch.cat([x[i], y[j]]))))
            assert torch.allclose(scores[i, j], direct.squeeze(), atol=1e-5)


def test_separable_critic_is_an_inner_product_of_embeddings() -> None:
    torch.manual_seed(0)
    c = SeparableCritic(3, 4, hidden_dim=200, embedding_dim=100)
    x, y = torch.randn(6, 3), torch.randn(5, 4)
    assert c(x, y).shape == (6, 5)
    assert torch.allclose(c(x, y)[2, 3], c.phi(x[2]) @ c.psi(y[3]), atol=1e-5)
    assert c.phi[-1].out_features == 100 and c.phi[0].out_features == 200


def test_build_critic_names() -> None:
    assert isinstance(build_critic("bilinear", 4, 4), BilinearCritic)
    assert isinstance(build_critic("separable", 4, 4), SeparableCritic)
    assert isinstance(build_critic("mlp", 4, 4), ConcatCritic)
