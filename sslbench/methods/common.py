"""Parts shared by several methods, kept once: the InfoNCE and negative-cosine losses, the
momentum (EMA) target of the online encoder (updated by ``Method.on_train_step_end`` from the
pairs :func:`target_pairs` declares), and the predictor with its own learning rate.

A method composes these; it does not inherit them. The momentum target keeps the attribute names
``target_backbone`` / ``target_projector`` beside the online ``backbone`` / ``projector``, so the
checkpoints of every method with a target read the same way.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslbench.models.heads import MLP


def info_nce(query: torch.Tensor, key: torch.Tensor, temperature: float,
             negatives: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE with cosine logits: He et al., "Momentum Contrast", CVPR 2020, eq. 1.

    L_q = −log( exp(q·k₊/τ) / Σ_{i=0}^{K} exp(q·k_i/τ) ), q and k l2-normalised, averaged over
    the N queries; query n's positive is ``key[n]``.

    - ``negatives`` (K, d), e.g. MoCo's queue: the K+1 keys are k₊ and the K negatives.
    - ``negatives`` None: in-batch, as in MoCo v3 (Chen, Xie, He, ICCV 2021, Alg. 1): the other
      N − 1 keys of the batch are query n's negatives (logits q @ kᵀ / τ, labels 0 … N−1).

    No gradient is stopped here; the caller passes detached keys where the method says so.
    """
    q = F.normalize(query, dim=1)
    k = F.normalize(key, dim=1)
    if negatives is None:
        logits = q @ k.T
        labels = torch.arange(q.shape[0], device=q.device)
    else:
        positive = (q * k).sum(dim=1, keepdim=True)
        logits = torch.cat([positive, q @ F.normalize(negatives, dim=1).T], dim=1)
        labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits / temperature, labels)


def negative_cosine(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """D(p, z) = −⟨p/‖p‖₂, z/‖z‖₂⟩ averaged over the batch: Chen & He, "Exploring Simple Siamese
    Representation Learning", CVPR 2021, eq. 1. No stop-gradient here: the caller detaches."""
    return -F.cosine_similarity(prediction, target, dim=-1).mean()


# ---------------------------------------------------------------------------------------------
# Momentum target (BYOL §3.1, MoCo eq. 2): ξ ← τ ξ + (1 − τ) θ after every step.


def add_momentum_target(method: nn.Module) -> None:
    """Give ``method`` frozen copies ``target_backbone`` / ``target_projector`` of its online
    ``backbone`` / ``projector``; they never receive gradients."""
    method.target_backbone = copy.deepcopy(method.backbone).requires_grad_(False)
    method.target_projector = copy.deepcopy(method.projector).requires_grad_(False)


@torch.no_grad()
def target_forward(method: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Projection of ``x`` by the momentum target (no graph is built)."""
    return method.target_projector(method.target_backbone(x))


def target_pairs(method: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """The momentum pairs made by :func:`add_momentum_target`, for ``Method.momentum_pairs``:
    the EMA step ξ ← τ ξ + (1 − τ) θ with τ cosine-scheduled from ``ema_decay`` to
    ``ema_final``; τ = 0 copies the online weights (a shared-weight target, SimSiam-like),
    τ = 1 freezes the target."""
    return [(method.backbone, method.target_backbone),
            (method.projector, method.target_projector)]


# ---------------------------------------------------------------------------------------------
# Predictor (BYOL, SimSiam, MoCo v3) with the collapse-ablation switches.


def build_predictor(use_predictor: bool, dim: int, hidden_dim: int) -> nn.Module:
    """The 2-layer predictor MLP dim → hidden → dim, or the identity when ``use_predictor`` is
    off (the ablation of BYOL Table 5b / SimSiam Table 1, which collapses)."""
    return MLP(dim, hidden_dim, dim, 2) if use_predictor else nn.Identity()


def predictor_param_groups(method: nn.Module, lr_mult: float,
                           fixed_lr: bool = False) -> list[dict[str, Any]]:
    """Parameter groups for the optimizer: the predictor's learning rate is ``lr_mult`` times the
    base one, and with ``fixed_lr`` it is not scheduled (no warm-up, no cosine decay: SimSiam
    §4.3, ``--fix-pred-lr`` of the official code; see :func:`sslbench.train.optim.param_groups`).
    """
    predictor = {id(p) for p in method.predictor.parameters()}
    rest = [p for p in method.parameters() if id(p) not in predictor]
    return [{"params": rest, "lr_mult": 1.0},
            {"params": list(method.predictor.parameters()), "lr_mult": lr_mult,
             "fixed_lr": fixed_lr}]
