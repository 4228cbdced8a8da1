"""DINO: Caron, Touvron, Misra, Jégou, Mairal, Bojanowski, Joulin, "Emerging Properties in
Self-Supervised Vision Transformers", ICCV 2021.

Self-distillation with no labels: a student network (backbone → MLP head → l2-normalised
bottleneck → weight-normalised prototypes) is trained to predict, for every view, the output
distribution of a teacher on the *other* global views. The teacher is the student's exponential
moving average (τ cosine-scheduled towards 1) and receives no gradient; its outputs are centred
(a running mean C, momentum m) and sharpened (a low temperature τ_t), which together avoid
collapse (§3.1, Algorithm 1). With multi-crop the student also sees ``augment.small_crops``
low-resolution crops while the teacher sees only the two global views.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sslbench.config import RunConfig, bounded
from sslbench.distributed.collectives import gather
from sslbench.methods import MethodSpec
from sslbench.methods.base import Method, StepOutput
from sslbench.methods.common import add_momentum_target, target_pairs


@dataclass
class DINOConfig:
    name: str = "dino"
    num_prototypes: int = bounded(1024, lo=1)  # K, the output dimension (65 536 in the paper)
    student_temperature: float = bounded(0.1, lo=0.0, lo_open=True)  # τ_s
    teacher_temperature: float = bounded(0.04, lo=0.0, lo_open=True)  # τ_t (0.04–0.07)
    center_momentum: float = bounded(0.9, lo=0.0, hi=1.0, hi_open=True)  # m of the centre C
    ema_decay: float = bounded(0.99, lo=0.0, hi=1.0)  # teacher τ at step 0 (0.996 on ImageNet)
    ema_final: float = bounded(1.0, lo=0.0, hi=1.0)
    freeze_prototypes_steps: int = bounded(0, lo=0)  # the last layer frozen (the paper: 1 epoch)


def dino_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor,
              student_temperature: float, teacher_temperature: float) -> torch.Tensor:
    """DINO eq. 3 with multi-crop (Algorithm 1, §3.1): the mean over the pairs (teacher view i,
    student view j ≠ i) of H(P_t^i, P_s^j) = −Σ_k P_t^(k) log P_s^(k), averaged over the batch,
    with P_s = softmax(g_s / τ_s) and P_t = softmax((g_t − C) / τ_t).

    ``student``: the logits [B, K] of every view (the global ones first, in the teacher's
    order); ``teacher``: the logits of the global views. No gradient flows into the teacher.
    """
    targets = [F.softmax((t.detach() - center) / teacher_temperature, dim=1) for t in teacher]
    log_p = [F.log_softmax(s / student_temperature, dim=1) for s in student]
    terms = [-(q * log_p[j]).sum(dim=1).mean()
             for i, q in enumerate(targets) for j in range(len(log_p)) if j != i]
    return torch.stack(terms).mean()


class NormalizedPrototypes(nn.Module):
    """The last layer: a linear map to K logits whose weight rows are l2-normalised, DINO's
    weight-normalised layer with its norm fixed to 1 (``norm_last_layer=True``)."""

    def __init__(self, dim: int, num_prototypes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_prototypes, dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, z: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        weight = self.weight.detach() if frozen else self.weight
        return F.linear(F.normalize(z, dim=1), F.normalize(weight, dim=1))


class DINO(Method):
    multi_crop = True
    # While the prototypes are frozen they get no gradient: DDP must be told to look for that.
    ddp_find_unused_parameters = True

    def __init__(self, cfg: RunConfig, backbone: nn.Module) -> None:
        super().__init__(cfg, backbone)
        m, c = cfg.model, cfg.method
        self.projector = self.make_projector(m)  # to the bottleneck (256 in the paper)
        self.prototypes = NormalizedPrototypes(m.projector_dim, c.num_prototypes)
        add_momentum_target(self)  # the teacher: target_backbone, target_projector, and:
        self.target_prototypes = copy.deepcopy(self.prototypes).requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, c.num_prototypes))
        self.steps_done = 0

    def _student(self, x: torch.Tensor) -> torch.Tensor:
        frozen = self.steps_done < self.cfg.freeze_prototypes_steps
        return self.prototypes(self.projector(self.backbone(x)), frozen)

    @torch.no_grad()
    def _teacher(self, x: torch.Tensor) -> torch.Tensor:
        return self.target_prototypes(self.target_projector(self.target_backbone(x)))

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        c = self.cfg
        student = self.forward_views(self._student, views)  # the small crops too
        teacher = self.forward_views(self._teacher, views[:2])
        loss = dino_loss(student, list(teacher), self.center, c.student_temperature,
                         c.teacher_temperature)
        with torch.no_grad():  # C ← m C + (1 − m) · mean of the teacher outputs (global batch)
            batch_mean = gather(torch.cat(teacher)).float().mean(dim=0, keepdim=True)
            self.center.mul_(c.center_momentum).add_(batch_mean, alpha=1 - c.center_momentum)
        return loss, {}

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [*target_pairs(self), (self.prototypes, self.target_prototypes)]

    def on_train_step_end(self, step: int, total_steps: int) -> dict[str, float]:
        self.steps_done = step
        return super().on_train_step_end(step, total_steps)

    def get_extra_state(self) -> dict[str, int]:
        """The host-side step counter (it decides when the prototypes unfreeze)."""
        return {"steps_done": self.steps_done}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.steps_done = int(state["steps_done"])


SPEC = MethodSpec(
    name="dino",
    paper="Caron et al., Emerging Properties in Self-Supervised Vision Transformers, ICCV 2021",
    family="distillation",
    config_cls=DINOConfig,
    method_cls=DINO,
    # Multi-crop as in the paper (2 global + small crops; 10 small crops at 96 px on ImageNet);
    # the last layer frozen for the first 100 steps.
    defaults={"augment.small_crops": 2, "method.freeze_prototypes_steps": 100},
    losses=(dino_loss,),
)
