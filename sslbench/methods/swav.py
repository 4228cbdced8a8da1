"""SwAV: Caron, Misra, Mairal, Goyal, Bojanowski, Joulin, "Unsupervised Learning of Visual
Features by Contrasting Cluster Assignments", NeurIPS 2020.

Each view's l2-normalised embedding z is scored against K l2-normalised prototypes c_k. The codes
Q of a view are an equipartitioned assignment of the batch to the prototypes, computed without
gradient by a few Sinkhorn-Knopp iterations (eq. 3, appendix A.1); each view then predicts the
other view's codes from its own scores (the swapped prediction, eqs. 1–2).

State the method keeps:
- the prototypes, renormalised before every step, frozen (their gradient dropped) for the first
  ``freeze_prototypes_steps`` steps, as the paper does during the first epoch;
- an optional queue of past embeddings per view (``queue_size``), scored with the current
  prototypes so that Sinkhorn sees more than one small batch (§4, "small batches");
- multi-crop (§3.2): the ``augment.small_crops`` low-resolution crops of each image, made by the
  batched augmentation like the two full-resolution views (views 3 and on). They only predict
  codes; codes come from the two full-resolution views.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sslbench.config import RunConfig, bounded
from sslbench.distributed.collectives import gather
from sslbench.methods import MethodSpec
from sslbench.methods.base import Method, StepOutput


@dataclass
class SwAVConfig:
    name: str = "swav"
    num_prototypes: int = bounded(3000, lo=1)  # K (3000 on ImageNet and CIFAR)
    temperature: float = bounded(0.1, lo=0.0, lo_open=True)  # τ in eq. 2
    sinkhorn_epsilon: float = bounded(0.05, lo=0.0, lo_open=True)  # ε in eq. 3
    sinkhorn_iterations: int = bounded(3, lo=1)
    queue_size: int = bounded(0, lo=0)  # stored embeddings per view; 0 disables the queue
    queue_start_step: int = bounded(0, lo=0)  # the queue joins Sinkhorn from here, once full
    freeze_prototypes_steps: int = bounded(0, lo=0)  # prototypes get no update for these steps


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """SwAV codes (eq. 3, appendix A.1): Sinkhorn-Knopp on exp(scores / ε) for [B, K] scores.

    Q = Diag(u) exp(Cᵀ Z / ε) Diag(v) is scaled alternately so that, as a transport plan P = Q/B,
    each prototype gets mass 1/K and each sample mass 1/B; the last step fixes the sample
    marginal exactly, the prototype marginal holds up to the convergence of ``iterations``
    steps. Returned as codes [B, K]: every row sums to 1 (soft assignment of sample b), every
    column to ≈ B/K (equipartition). No gradient flows through the codes.
    """
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))  # exp(·/ε): no bf16
    # Subtracting the global max leaves Q unchanged after normalisation but avoids overflow.
    q = torch.exp((scores - scores.max()) / epsilon).T  # [K, B]
    q /= q.sum()
    num_prototypes, batch = q.shape
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= num_prototypes
        q /= q.sum(dim=0, keepdim=True)
        q /= batch
    return (q * batch).T


def swapped_prediction(scores: torch.Tensor, codes: torch.Tensor,
                       temperature: float) -> torch.Tensor:
    """SwAV eq. 2, averaged over the batch: ℓ(z_t, q_s) = −Σ_k q_s^(k) log p_t^(k), with
    p_t = softmax(z_tᵀ c / τ) the prediction from ``scores`` [B, K] = z_tᵀ C."""
    return -(codes * F.log_softmax(scores / temperature, dim=1)).sum(dim=1).mean()


def swav(scores1: torch.Tensor, scores2: torch.Tensor, temperature: float = 0.1,
         epsilon: float = 0.05, iterations: int = 3, queue_scores1: torch.Tensor | None = None,
         queue_scores2: torch.Tensor | None = None,
         small_crop_scores: Sequence[torch.Tensor] = ()) -> torch.Tensor:
    """SwAV eq. 1, averaged over the predictions: L = ℓ(z_1, q_2) + ℓ(z_2, q_1) over 2 terms.

    ``scores1``/``scores2`` [B, K] are the prototype scores z_tᵀ C of the two views (normalised z
    and prototypes); the codes q of each come from :func:`sinkhorn` run on the view's scores
    stacked over ``queue_scores*`` [Q, K] (the queued embeddings' scores, if any; only the batch
    rows are kept). With multi-crop (§3.2), each of ``small_crop_scores`` predicts both codes,
    and the loss averages the 2 (1 + V) terms, as the reference implementation.
    """
    codes = []
    for scores, queued in ((scores1, queue_scores1), (scores2, queue_scores2)):
        stacked = scores if queued is None else torch.cat([scores, queued])
        codes.append(sinkhorn(stacked.detach(), epsilon, iterations)[: scores.shape[0]])
    predictors = (scores1, scores2, *small_crop_scores)
    total = scores1.new_zeros(())
    for i, q in enumerate(codes):
        others = [s for j, s in enumerate(predictors) if j != i]
        total = total + sum(swapped_prediction(s, q, temperature) for s in others) / len(others)
    return total / len(codes)


class SwAV(Method):
    multi_crop = True
    # While frozen, the prototypes take no part in the gradient: under DistributedDataParallel
    # that is a parameter without gradient, which DDP must look for (and then leaves alone).
    ddp_find_unused_parameters = True

    def __init__(self, cfg: RunConfig, backbone: nn.Module) -> None:
        super().__init__(cfg, backbone)
        m, c = cfg.model, cfg.method
        self.projector = self.make_projector(m)
        self.prototypes = nn.Linear(m.projector_dim, c.num_prototypes, bias=False)
        self.register_buffer("queue", torch.zeros(2, c.queue_size, m.projector_dim))
        self.queued = 0  # how many rows of the queue hold embeddings (python ints: no syncs)
        self.steps_done = 0

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(self.backbone(x)), dim=1)

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        c = self.cfg
        with torch.no_grad():  # prototypes on the unit sphere before each step (§4)
            w = self.prototypes.weight
            w.copy_(F.normalize(w, dim=1))
        z1, z2, *z_small = self.forward_views(self._embed, views)
        # Sinkhorn's equipartition and the queue over the global batch.
        z1, z2, z_small = gather(z1), gather(z2), tuple(gather(z) for z in z_small)
        with torch.autocast(z1.device.type, enabled=False):  # Sinkhorn's exp(·/ε) needs fp32
            # Frozen: scored with a detached weight, the prototypes get no gradient (grad None),
            # so every optimizer skips them, weight decay and momentum included, as the
            # reference does; the same with DDP, which keeps an unused parameter's grad None.
            weight = self.prototypes.weight
            if self.steps_done < c.freeze_prototypes_steps:
                weight = weight.detach()

            def proto(z: torch.Tensor) -> torch.Tensor:
                return F.linear(z, weight)

            loss = swav(proto(z1.float()), proto(z2.float()), c.temperature,
                        c.sinkhorn_epsilon, c.sinkhorn_iterations, *self._queue_scores(),
                        small_crop_scores=[proto(z.float()) for z in z_small])
        self._enqueue(z1, z2)
        return loss, {}

    @torch.no_grad()
    def _queue_scores(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        size = self.cfg.queue_size
        if size == 0 or self.queued < size or self.steps_done < self.cfg.queue_start_step:
            return None, None
        return self.prototypes(self.queue[0]), self.prototypes(self.queue[1])

    @torch.no_grad()
    def _enqueue(self, z1: torch.Tensor, z2: torch.Tensor) -> None:
        """First in, first out: the newest embeddings at the front, the oldest dropped."""
        size = self.cfg.queue_size
        if size == 0:
            return
        new = torch.stack([z1, z2]).detach().to(self.queue.dtype)
        self.queue.copy_(torch.cat([new, self.queue], dim=1)[:, :size])
        self.queued = min(self.queued + z1.shape[0], size)

    def on_train_step_end(self, step: int, total_steps: int) -> dict[str, float]:
        self.steps_done = step
        return super().on_train_step_end(step, total_steps)

    def get_extra_state(self) -> dict[str, int]:
        """The host-side counters, saved in the state dict so a resumed run continues exactly."""
        return {"queued": self.queued, "steps_done": self.steps_done}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.queued, self.steps_done = int(state["queued"]), int(state["steps_done"])


SPEC = MethodSpec(
    name="swav",
    paper="Caron et al., Unsupervised Learning of Visual Features by Contrasting Cluster "
          "Assignments, NeurIPS 2020",
    family="clustering",
    config_cls=SwAVConfig,
    method_cls=SwAV,
    losses=(swav, sinkhorn, swapped_prediction),
    defaults={
        "method.num_prototypes": 100,
        "method.freeze_prototypes_steps": 100,
    },
)
