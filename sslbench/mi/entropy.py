"""Differential entropy by kernel density estimation, and the ER bound on mutual information.

KDE entropy (the plug-in "resubstitution" estimator of Ahmad & Lin 1976; leave-one-out variant
of Joe 1989 by default), on N embeddings z_1..z_N:

    Ĥ(Z) = −(1/N) Σ_n log p̂(z_n),   p̂(z_n) = 1/(N−1) Σ_{m≠n} k_h(z_n, z_m)   (leave-one-out)
                                     p̂(z_n) = 1/N     Σ_m     k_h(z_n, z_m)   (resubstitution)

with a normalised kernel, so Ĥ is a differential entropy (it can be negative, and it moves by
d log s when the embeddings are scaled by s). Kernels:

- ``gaussian``: k_h(z, z') = N(z; z', h² I) on R^d;
- ``vmf``: von Mises–Fisher on the unit sphere S^{d−1}, k(u, u') = C_d(κ) exp(κ uᵀu'), κ = 1/h²,
  on l2-normalised embeddings; Ĥ is then relative to the surface measure of the sphere (at most
  log |S^{d−1}|, the entropy of the uniform distribution).

Bandwidth rule (``bandwidth``): ``silverman`` h = (4/(d+2))^{1/(d+4)} σ̂ N^{−1/(d+4)} (default),
``scott`` h = σ̂ N^{−1/(d+4)}, with σ̂ the mean per-coordinate std of the embeddings (Silverman
1986, eq. 4.14; Scott 1992), or a number. The bandwidth is treated as a constant (no gradient).

Ceiling: with resubstitution p̂(z_n) ≥ k_h(z_n, z_n)/N, so Ĥ ≤ log N − log k_h(0): however spread
the embeddings are, a batch of N can show at most ≈ log N nats more than the kernel's own spread.
Leave-one-out has no such ceiling but the same ≈ log N scale. Either way it is the entropy of the
KDE smoothed at scale h, a large-sample estimate, not the entropy of a deterministic encoder's
output (infinite or undefined in the strict sense).

ER bound (Rodríguez-Gálvez, Blaas, Rodríguez, Tarokh, "The Role of Entropy and Reconstruction in
Multi-View Self-Supervised Learning", ICML 2023, eq. 3): I(Z₁; Z₂) ≥ H(Z₂) + E[log q(Z₂ | Z₁)]
for any conditional density q: a Gaussian q = N(μ(z₁), σ² I) gives a (negative, scaled) MSE
term, a von Mises–Fisher q = vMF(μ(z₁), κ) a (scaled) cosine similarity term.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sslbench.config import KDE_BANDWIDTH_RULES

KERNELS = ("gaussian", "vmf")
# σ̂ of a collapsed (constant) embedding is 0; the floor keeps h > 0 and Ĥ finite (very low)
SIGMA_FLOOR = 1e-6
BANDWIDTH_RULES = KDE_BANDWIDTH_RULES


def select_bandwidth(z: torch.Tensor, rule: str | float = "silverman") -> float:
    """The kernel bandwidth h for embeddings ``z`` [N, d] by ``rule`` (see the module doc)."""
    if not isinstance(rule, str) or rule not in BANDWIDTH_RULES:
        return float(rule)
    n, d = z.shape
    sigma = z.detach().double().std(dim=0).mean().clamp_min(SIGMA_FLOOR).item()
    factor = (4 / (d + 2)) ** (1 / (d + 4)) if rule == "silverman" else 1.0
    return factor * sigma * n ** (-1 / (d + 4))


def log_bessel_iv(v: float, x: float, points: int = 8193) -> float:
    """log I_v(x) for v ≥ 0, x > 0 from the integral DLMF 10.32.2:

    I_v(x) = (x/2)^v / (√π Γ(v + ½)) ∫₀^π e^{x cos θ} sin^{2v} θ dθ,

    by the trapezoidal rule in log space (stable for the large orders of high-dimensional vMF).
    """
    theta = torch.linspace(0, math.pi, points, dtype=torch.float64)
    log_f = x * theta.cos() + 2 * v * theta.sin().clamp_min(1e-300).log()
    if v > 0:
        log_f[0] = log_f[-1] = -math.inf  # sin^{2v}(0) = sin^{2v}(π) = 0
    log_w = torch.full_like(theta, math.log(math.pi / (points - 1)))
    log_w[[0, -1]] -= math.log(2)
    log_integral = torch.logsumexp(log_f + log_w, dim=0).item()
    return v * math.log(x / 2) - 0.5 * math.log(math.pi) - math.lgamma(v + 0.5) + log_integral


def log_vmf_normaliser(dim: int, kappa: float) -> float:
    """log C_d(κ), C_d(κ) = κ^{d/2−1} / ((2π)^{d/2} I_{d/2−1}(κ)), the vMF density constant on
    S^{d−1} w.r.t. its surface measure; κ → 0 gives −log |S^{d−1}| (the uniform density)."""
    if kappa <= 0:
        return math.lgamma(dim / 2) - math.log(2) - (dim / 2) * math.log(math.pi)
    v = dim / 2 - 1
    return v * math.log(kappa) - (dim / 2) * math.log(2 * math.pi) - log_bessel_iv(v, kappa)


def log_kernel_matrix(z: torch.Tensor, kernel: str, h: float) -> torch.Tensor:
    """``[n, m] = log k_h(z_n, z_m)`` for the normalised ``gaussian`` or ``vmf`` kernel."""
    d = z.shape[1]
    if kernel == "gaussian":
        sq = torch.cdist(z, z).pow(2)
        return -sq / (2 * h * h) - 0.5 * d * math.log(2 * math.pi * h * h)
    if kernel == "vmf":
        u = F.normalize(z, dim=1)
        kappa = 1 / (h * h)
        return kappa * (u @ u.T) + log_vmf_normaliser(d, kappa)
    raise ValueError(f"unknown kernel {kernel!r}")


def entropy_from_log_kernel(log_k: torch.Tensor, leave_one_out: bool = True) -> torch.Tensor:
    """−(1/N) Σ_n log p̂(z_n) from the [N, N] log-kernel matrix (see the module doc)."""
    n = log_k.shape[0]
    if leave_one_out:
        log_k = log_k.masked_fill(torch.eye(n, dtype=torch.bool, device=log_k.device), -math.inf)
        return -(log_k.logsumexp(dim=1) - math.log(n - 1)).mean()
    return -(log_k.logsumexp(dim=1) - math.log(n)).mean()


def kde_entropy(z: torch.Tensor, kernel: str = "gaussian", bandwidth: str | float = "silverman",
                leave_one_out: bool = True) -> torch.Tensor:
    """Ĥ(Z) in nats from N samples ``z`` [N, d] (differentiable in z; h by ``bandwidth``)."""
    points = F.normalize(z, dim=1) if kernel == "vmf" else z
    h = select_bandwidth(points, bandwidth)
    return entropy_from_log_kernel(log_kernel_matrix(z, kernel, h), leave_one_out)


def kde_conditional_entropy(v: torch.Tensor, w: torch.Tensor, kernel: str = "gaussian",
                            bandwidth: str | float = "silverman",
                            leave_one_out: bool = True) -> torch.Tensor:
    """Ĥ(V | W) = Ĥ(V, W) − Ĥ(W), the joint KDE with the product kernel k(v)·k(w) (each with its
    own bandwidth), so both terms share W's kernel and the estimate is consistent."""
    pv, pw = ((F.normalize(t, dim=1) if kernel == "vmf" else t) for t in (v, w))
    log_kw = log_kernel_matrix(w, kernel, select_bandwidth(pw, bandwidth))
    log_kv = log_kernel_matrix(v, kernel, select_bandwidth(pv, bandwidth))
    return (entropy_from_log_kernel(log_kv + log_kw, leave_one_out)
            - entropy_from_log_kernel(log_kw, leave_one_out))


def gaussian_reconstruction(target: torch.Tensor, prediction: torch.Tensor,
                            sigma: float = 1.0) -> torch.Tensor:
    """E[log q(z₂ | z₁)] for q = N(μ(z₁), σ² I): −(d/2) log(2πσ²) − E‖z₂ − μ‖² / (2σ²)."""
    d = target.shape[1]
    sq = (target - prediction).pow(2).sum(dim=1).mean()
    return -0.5 * d * math.log(2 * math.pi * sigma**2) - sq / (2 * sigma**2)


def vmf_reconstruction(target: torch.Tensor, prediction: torch.Tensor,
                       kappa: float = 10.0) -> torch.Tensor:
    """E[log q(z₂ | z₁)] for q = vMF(μ(z₁)/‖μ‖, κ) on S^{d−1}: log C_d(κ) + κ E[cos(z₂, μ)]."""
    cos = F.cosine_similarity(target, prediction, dim=1).mean()
    return log_vmf_normaliser(target.shape[1], kappa) + kappa * cos


def er_bound(z1: torch.Tensor, z2: torch.Tensor, prediction: torch.Tensor | None = None, *,
             reconstruction: str = "vmf", kernel: str = "vmf",
             bandwidth: str | float = "silverman", kappa: float = 10.0,
             sigma: float = 1.0) -> dict[str, torch.Tensor]:
    """The ER bound I(Z₁; Z₂) ≥ Ĥ(Z₂) + E[log q(Z₂ | Z₁)] and its two terms, in nats.

    ``prediction`` is μ(z₁) (a predictor's output); None uses z₁ itself. The vMF reconstruction
    goes with the vMF kernel (both on the sphere), the Gaussian one with the Gaussian kernel.
    """
    mu = z1 if prediction is None else prediction
    entropy = kde_entropy(z2, kernel, bandwidth)
    recon = (vmf_reconstruction(z2, mu, kappa) if reconstruction == "vmf"
             else gaussian_reconstruction(z2, mu, sigma))
    return {"entropy": entropy, "reconstruction": recon, "bound": entropy + recon}
