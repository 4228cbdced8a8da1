"""Representation diagnostics measured on a fixed held-out batch after every epoch.

- Collapse (Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021, sec. 4.1):
  the std over the batch of each channel of the l2-normalised output, averaged over channels.
  It is 0 for a collapsed (constant) embedding and ≈ 1/√d for a healthy one.
- RankMe (Garrido, Balestriero, Najman, LeCun, "RankMe: Assessing the Downstream Performance of
  Pretrained Self-Supervised Representations by Their Rank", ICML 2023, eq. 1): exp of the
  entropy of the normalised singular values p_k = σ_k / ‖σ‖₁ (+ ε) of the embedding matrix.
- Alignment and uniformity (Wang & Isola, "Understanding Contrastive Representation Learning
  through Alignment and Uniformity on the Hypersphere", ICML 2020, eqs. 4–5), on l2-normalised
  f: alignment E‖f(x) − f(y)‖² over positive pairs (α = 2), uniformity log E exp(−2‖f(x) − f(y)‖²)
  over all pairs (t = 2).
- InfoNCE (van den Oord, Li, Vinyals, "Representation Learning with Contrastive Predictive
  Coding", 2018, eq. 5): I(v1; v2) ≥ log K − L_NCE for a batch of K pairs and any critic; with
  the cosine critic s/τ the estimate can never exceed log K, its ceiling, logged beside it.
  It is ``sslbench.mi.bounds.infonce`` on the cosine critic's scores.
- Entropy and the ER bound (Rodríguez-Gálvez et al., ICML 2023, eq. 3): ``entropy_kde``, the KDE
  entropy Ĥ(Z) of the output (``eval.diagnostics.kde_kernel`` / ``kde_bandwidth``, see
  ``sslbench.mi.entropy``; ``entropy_log_n`` = log N is its scale), ``er_reconstruction``
  E[log q(z₂ | z₁)] for a vMF q of concentration ``er_kappa``, and ``er_bound`` their sum.
- Latent bootstrapping as an information bottleneck (methods with a predictor: BYOL, SimSiam,
  DirectPred, MoCo v3), LB = (1−β)·H(V_θ) + β·H(V_θ | V̂_ζ) − H(T): ``ib_entropy`` Ĥ(V_θ) and
  ``ib_conditional_entropy`` Ĥ(V_θ | V̂_ζ) with the same estimator, V_θ the online projection of
  view 1 and V̂_ζ the target's projection of view 2 (the online network's own for SimSiam).
- A method with ``mi_estimates(view1, view2)`` (InfoMax) adds its own bounds with its critic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from sslbench.data.augment import BatchAugment
from sslbench.mi.bounds import infonce
from sslbench.mi.entropy import kde_conditional_entropy, kde_entropy, vmf_reconstruction


def collapse_std(z: torch.Tensor) -> float:
    """Mean over channels of the batch std of the l2-normalised rows of ``z`` [N, d]."""
    u = F.normalize(z.float(), dim=1)
    return u.std(dim=0).mean().item()


def rankme(z: torch.Tensor, eps: float = 1e-7) -> float:
    """Effective rank of ``z`` [N, d]: exp(−Σ p_k log p_k), p_k = σ_k / Σσ + ε (RankMe eq. 1)."""
    sigma = torch.linalg.svdvals(z.double())
    p = sigma / sigma.sum().clamp_min(eps) + eps
    return math.exp(-(p * p.log()).sum().item())


def alignment(z1: torch.Tensor, z2: torch.Tensor) -> float:
    """E‖u1 − u2‖² over positive pairs of l2-normalised embeddings (Wang & Isola, α = 2)."""
    u1, u2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    return (u1 - u2).pow(2).sum(dim=1).mean().item()


def uniformity(z: torch.Tensor, t: float = 2.0) -> float:
    """log E_{i<j} exp(−t ‖u_i − u_j‖²) of l2-normalised embeddings (Wang & Isola)."""
    u = F.normalize(z.float(), dim=1)
    return torch.pdist(u, p=2).pow(2).mul(-t).exp().mean().log().item()


def infonce_estimate(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1,
                     ) -> tuple[float, float]:
    """(log K − L_NCE, log K): the InfoNCE lower bound on I(v1; v2) for K pairs, and its ceiling.

    Critic: cosine similarity / ``temperature``; row i of z1 and row i of z2 are the positive
    pair. L_NCE is a cross-entropy, hence ≥ 0, so the estimate is ≤ log K.
    """
    u1, u2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    return infonce((u1 @ u2.T).double() / temperature).item(), math.log(z1.shape[0])


def entropy_diagnostics(z1: torch.Tensor, z2: torch.Tensor, kernel: str = "vmf",
                        bandwidth: str | float = "silverman", kappa: float = 10.0
                        ) -> dict[str, float]:
    """Ĥ(Z₂) by KDE, the vMF reconstruction term of z₂ given z₁ and the ER bound, in nats."""
    entropy = kde_entropy(z2.double(), kernel, bandwidth).item()
    recon = vmf_reconstruction(z2.double(), z1.double(), kappa).item()
    return {"entropy_kde": entropy, "entropy_log_n": math.log(z2.shape[0]),
            "er_reconstruction": recon, "er_bound": entropy + recon}


def bottleneck_diagnostics(online: torch.Tensor, target: torch.Tensor, kernel: str = "vmf",
                           bandwidth: str | float = "silverman") -> dict[str, float]:
    """Ĥ(V_θ) and Ĥ(V_θ | V̂_ζ) of latent bootstrapping (see the module doc)."""
    v, w = online.double(), target.double()
    return {"ib_entropy": kde_entropy(v, kernel, bandwidth).item(),
            "ib_conditional_entropy": kde_conditional_entropy(v, w, kernel, bandwidth).item()}


@dataclass
class Diagnostics:
    """A fixed held-out batch and two fixed augmentations of it, measured on demand."""

    view1: torch.Tensor
    view2: torch.Tensor
    temperature: float = 0.1
    kde_kernel: str = "vmf"
    kde_bandwidth: str | float = "silverman"
    er_kappa: float = 10.0
    dims: dict[str, int] = field(default_factory=dict)  # output name → d, set by `measure`

    @classmethod
    def from_images(cls, images: torch.Tensor, augment: BatchAugment, device: torch.device,
                    seed: int, temperature: float = 0.1, **entropy: str | float) -> Diagnostics:
        """Draw the two views once, from ``seed``, so every epoch is measured on the same input.
        ``entropy``: ``kde_kernel``, ``kde_bandwidth``, ``er_kappa``."""
        gen = torch.Generator(device=device).manual_seed(seed)
        x = images.to(device)
        return cls(augment(x, gen), augment(x, gen), temperature, **entropy)  # type: ignore[arg-type]

    @torch.no_grad()
    def measure(self, method: nn.Module) -> dict[str, float]:
        """Diagnostics of ``method.backbone`` and, if the method has one, ``method.projector``."""
        was_training = method.training
        method.eval()
        try:
            h1, h2 = method.backbone(self.view1).float(), method.backbone(self.view2).float()
            out = {"collapse_std_backbone": collapse_std(h1), "rankme_backbone": rankme(h1)}
            self.dims["backbone"] = h1.shape[1]
            z1, z2 = h1, h2
            projector = getattr(method, "projector", None)
            if isinstance(projector, nn.Module):
                z1, z2 = projector(h1).float(), projector(h2).float()
                self.dims["projector"] = z1.shape[1]
                out |= {"collapse_std_projector": collapse_std(z1),
                        "rankme_projector": rankme(z1)}
            mi, log_k = infonce_estimate(z1, z2, self.temperature)
            out |= {"alignment": alignment(z1, z2),
                    "uniformity": (uniformity(z1) + uniformity(z2)) / 2,
                    "infonce_mi": mi, "infonce_log_k": log_k}
            out |= entropy_diagnostics(z1, z2, self.kde_kernel, self.kde_bandwidth,
                                       self.er_kappa)
            if isinstance(getattr(method, "predictor", None), nn.Module):
                out |= bottleneck_diagnostics(z1, self._target(method, h2, z2),
                                              self.kde_kernel, self.kde_bandwidth)
            if hasattr(method, "mi_estimates"):
                out |= method.mi_estimates(self.view1, self.view2)
        finally:
            method.train(was_training)
        return out


    def _target(self, method: nn.Module, h2: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """V̂_ζ: the momentum target's projection of view 2, or the online one (SimSiam)."""
        target_backbone = getattr(method, "target_backbone", None)
        target_projector = getattr(method, "target_projector", None)
        if isinstance(target_backbone, nn.Module) and isinstance(target_projector, nn.Module):
            return target_projector(target_backbone(self.view2)).float()
        return z2


def collapsed_outputs(metrics: dict[str, float], dims: dict[str, int], ratio: float) -> list[str]:
    """The outputs whose collapse std is below ``ratio / √d`` (a healthy output sits at ≈ 1/√d)."""
    bad = []
    for name, d in dims.items():
        std = metrics.get(f"collapse_std_{name}")
        if std is not None and std < ratio / math.sqrt(d):
            bad.append(f"{name} std {std:.2e} < {ratio}/sqrt({d})")
    return bad
