"""Weighted kNN (Wu et al. 2018): separable features, hand-computed votes, k and T."""

from __future__ import annotations

import math

import pytest
import torch

from sslbench.eval.knn import knn_classify, knn_scores


def _separable(n_per_class: int, num_classes: int, dim: int, seed: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each class is a tight cluster around its own orthogonal direction (and a random scale)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    centres = torch.eye(dim)[:num_classes]
    noise = 0.05 * torch.randn(labels.shape[0], dim, generator=gen)
    scale = 0.5 + torch.rand(labels.shape[0], 1, generator=gen) * 10  # cosine ignores the norm
    return (centres[labels] + noise) * scale, labels


def test_perfectly_separable_features_give_100_percent() -> None:
    train_x, train_y = _separable(300, 10, 32, seed=0)
    test_x, test_y = _separable(50, 10, 32, seed=1)
    result = knn_classify(train_x, train_y, test_x, test_y, num_classes=10, k=200,
                          temperature=0.1)
    assert result == {"top1": 1.0, "top5": 1.0}


def test_votes_are_exp_of_cosine_over_temperature() -> None:
    train_x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    train_y = torch.tensor([0, 1, 1])
    test_x = torch.tensor([[3.0, 0.0]])
    scores = knn_scores(train_x, train_y, test_x, num_classes=2, k=2, temperature=0.5)
    # neighbours: [1, 0] (cos 1, class 0) and [1, 1] (cos 1/√2, class 1); [0, 2] (cos 0) is 3rd
    expected = torch.tensor([[math.exp(1 / 0.5), math.exp((1 / math.sqrt(2)) / 0.5)]])
    assert torch.allclose(scores, expected)


def test_k_limits_the_vote_and_changes_the_answer() -> None:
    # one very close class-0 neighbour, three farther class-1 ones
    train_x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.8, 0.6], [0.8, 0.6]])
    train_y = torch.tensor([0, 1, 1, 1])
    test_x, test_y = torch.tensor([[1.0, 0.05]]), torch.tensor([0])
    assert knn_classify(train_x, train_y, test_x, test_y, 2, k=1)["top1"] == 1.0
    assert knn_classify(train_x, train_y, test_x, test_y, 2, k=4, temperature=1.0)["top1"] == 0.0
    # a small temperature makes the nearest neighbour dominate again
    assert knn_classify(train_x, train_y, test_x, test_y, 2, k=4, temperature=0.01)["top1"] == 1.0


def test_chunking_does_not_change_the_scores() -> None:
    train_x, train_y = _separable(20, 4, 8, seed=2)
    test_x = torch.randn(37, 8, generator=torch.Generator().manual_seed(3))
    whole = knn_scores(train_x, train_y, test_x, 4, k=10, temperature=0.1)
    chunked = knn_scores(train_x, train_y, test_x, 4, k=10, temperature=0.1, chunk_size=5)
    assert torch.allclose(whole, chunked)
    assert "top5" not in knn_classify(train_x, train_y, test_x[:3], torch.zeros(3).long(), 4)


@pytest.mark.parametrize("k", [1, 200])
def test_k_larger_than_the_train_set_is_clamped(k: int) -> None:
    train_x, train_y = _separable(3, 2, 4, seed=4)
    result = knn_classify(train_x, train_y, train_x, train_y, 2, k=k)
    assert result["top1"] == 1.0
