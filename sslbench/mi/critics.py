"""Critics f(x, y) that score every pair of a batch: ``critic(x, y)[i, j] = f(x_i, y_j)``.

The three families of Tschannen et al., "On Mutual Information Maximization for Representation
Learning", ICLR 2020, sec. 3.2, with the sizes of the authors' notebook (google-research,
``mutual_information_representation_learning``, experiment ``critic_impact``):

- bilinear   f(x, y) = xᵀ W y on the encoders' outputs (no bias);
- separable  f(x, y) = φ(x)ᵀ ψ(y), φ and ψ MLPs with one hidden layer of 100 units, to 100-d;
- MLP        f(x, y) = MLP([x, y]), one hidden layer of 200 units, on the concatenation.

On 100-d codes that is 10 000 parameters for the bilinear critic, 40 400 for the separable one and
40 401 for the MLP critic: the MLP critic is the most expressive at the same size (it can
represent a higher MI estimate), which is the paper's point — a higher bound does not give a
better representation. Weights start as Keras' (Glorot-uniform, zero biases), as in the notebook.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from sslbench.models.encoders import glorot_init

# The MLP critic works on [rows, K, hidden] activations a few rows at a time; this many elements
# per chunk keep them in a CPU core's cache (twice as fast as 64 rows at K = 128, hidden 200).
CHUNK_ELEMENTS = 1 << 18


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear → ReLU → Linear; no BatchNorm, so a score never depends on the rest of the batch."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))


class BilinearCritic(nn.Module):
    """f(x, y) = xᵀ W y, W Glorot-uniform (the notebook's bias-free dense layer on y)."""

    def __init__(self, x_dim: int, y_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(x_dim, y_dim)))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x @ self.weight @ y.T


class SeparableCritic(nn.Module):
    """f(x, y) = φ(x)ᵀ ψ(y): two MLPs to ``embedding_dim``; all K² scores in one matmul."""

    def __init__(self, x_dim: int, y_dim: int, hidden_dim: int = 100,
                 embedding_dim: int = 100) -> None:
        super().__init__()
        self.phi = glorot_init(mlp(x_dim, hidden_dim, embedding_dim))
        self.psi = glorot_init(mlp(y_dim, hidden_dim, embedding_dim))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.phi(x) @ self.psi(y).T


class ConcatCritic(nn.Module):
    """f(x, y) = MLP([x; y]) for all K² pairs: ReLU hidden layers ``hidden_dims``, a scalar out.

    W₁ [x; y] = W₁ˣ x + W₁ʸ y, so the first layer is applied to the K rows of x and of y once and
    broadcast to the K × K pairs, instead of K² concatenations; rows are done in chunks so the
    [chunk, K, hidden] activations stay small for large K.
    """

    def __init__(self, x_dim: int, y_dim: int, hidden_dims: tuple[int, ...] = (200,)) -> None:
        super().__init__()
        self.x_dim = x_dim
        self.hidden = nn.Linear(x_dim + y_dim, hidden_dims[0])
        rest: list[nn.Module] = []
        for a, b in itertools.pairwise(hidden_dims):
            rest += [nn.Linear(a, b), nn.ReLU()]
        self.head = nn.Sequential(*rest, nn.Linear(hidden_dims[-1], 1))
        glorot_init(self)

    def pair(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """f(x_i, y_i) for matching rows, from the concatenation itself (the definition)."""
        return self.head(torch.relu(self.hidden(torch.cat([x, y], dim=-1)))).squeeze(-1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = self.hidden.weight
        hx = x @ w[:, :self.x_dim].T + self.hidden.bias  # [K, h]
        hy = y @ w[:, self.x_dim:].T  # [K, h]
        chunk = max(1, CHUNK_ELEMENTS // (hy.shape[0] * hy.shape[1]))
        rows = [self.head(torch.relu(hx[i:i + chunk, None, :] + hy[None, :, :])).squeeze(-1)
                for i in range(0, hx.shape[0], chunk)]
        return torch.cat(rows)


def build_critic(name: str, x_dim: int, y_dim: int, *, separable_hidden_dim: int = 100,
                 mlp_hidden_dim: int = 200, embedding_dim: int = 100) -> nn.Module:
    """``bilinear``, ``separable`` or ``mlp`` (the concat critic), with the paper's widths."""
    if name == "bilinear":
        return BilinearCritic(x_dim, y_dim)
    if name == "separable":
        return SeparableCritic(x_dim, y_dim, separable_hidden_dim, embedding_dim)
    if name == "mlp":
        return ConcatCritic(x_dim, y_dim, (mlp_hidden_dim,))
    raise ValueError(f"unknown critic {name!r}")  # the config has already checked the name
