"""Variational lower bounds on I(X; Y) from a matrix of critic scores, in nats.

``scores[i, j] = f(x_i, y_j)`` for a batch of K pairs (x_i, y_i) drawn from p(x, y): the diagonal
holds the K positive (joint) pairs, the K(K − 1) off-diagonal entries are pairs drawn from the
product of the marginals p(x)p(y). Every bound returns a 0-d tensor that gradients flow through;
maximising it trains the critic (and the encoders under it). References: Poole, Ozair, van den
Oord, Alemi, Tucker, "On Variational Bounds of Mutual Information", ICML 2019 (eqs. 6–12), and
Tschannen, Djolonga, Rubenstein, Gelly, Lucic, "On Mutual Information Maximization for
Representation Learning", ICLR 2020 (eqs. 2–3).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def _off_diagonal(scores: torch.Tensor) -> torch.Tensor:
    k = scores.shape[0]
    return scores.masked_select(~torch.eye(k, dtype=torch.bool, device=scores.device))


def infonce(scores: torch.Tensor) -> torch.Tensor:
    """InfoNCE (van den Oord et al. 2018, eq. 5; Poole et al. eq. 12):

    I_NCE = (1/K) Σ_i log( e^{f(x_i, y_i)} / ((1/K) Σ_j e^{f(x_i, y_j)}) ) = log K − L_CE.

    The j-sum includes the positive j = i, so each term is at most log K: I_NCE ≤ log K for any
    critic. The optimal critic is log p(y | x)/p(y) (up to any function of x).
    """
    k = scores.shape[0]
    return (scores.diagonal() - scores.logsumexp(dim=1)).mean() + math.log(k)


def nwj(scores: torch.Tensor) -> torch.Tensor:
    """NWJ (Nguyen, Wainwright, Jordan 2010; Poole et al. eq. 6, "f-GAN KL"/MINE-f):

    I_NWJ = E_p[f] − e^{−1} E_{p(x)p(y)}[e^{f}].

    Tight when f = 1 + log p(x, y)/(p(x)p(y)) (the optimal critic); unbiased for a fixed critic,
    but its variance grows like e^{I} (Song & Ermon, ICLR 2020).
    """
    off = _off_diagonal(scores)
    return scores.diagonal().mean() - (off - 1).exp().mean()


def dv(scores: torch.Tensor) -> torch.Tensor:
    """Donsker–Varadhan (1983; MINE, Belghazi et al. 2018, eq. 10):

    I_DV = E_p[f] − log E_{p(x)p(y)}[e^{f}].

    Tight when f = log p(x, y)/(p(x)p(y)) + c. Since log m ≤ m/e for every m > 0,
    I_DV ≥ I_NWJ on the same scores. The log of a sample mean makes it biased (upwards for a
    fixed critic: E[−log m̂] ≥ −log E[m̂] by Jensen), the more so the larger the true MI.
    """
    off = _off_diagonal(scores)
    return scores.diagonal().mean() - (off.logsumexp(dim=0) - math.log(off.numel()))


BOUNDS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "infonce": infonce,
    "nwj": nwj,
    "dv": dv,
}
