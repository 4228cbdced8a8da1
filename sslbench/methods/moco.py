"""MoCo v2: He, Fan, Wu, Xie, Girshick, "Momentum Contrast for Unsupervised Visual Representation
Learning", CVPR 2020, with the MLP head and stronger augmentation of Chen, Fan, Girshick, He,
"Improved Baselines with Momentum Contrastive Learning", arXiv 2003.04297, 2020.

A query encoder (backbone → MLP projector) is trained with InfoNCE (MoCo eq. 1): each query's
positive is the key of the other view, made by a momentum key encoder (eq. 2, no gradient); its
negatives are the K keys of earlier batches held in a FIFO queue. Optionally symmetrised (both
views serve as queries), as in solo-learn's "MoCo v2+".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sslbench.config import RunConfig, bounded
from sslbench.distributed.collectives import gather
from sslbench.methods import MethodSpec
from sslbench.methods.base import Method, StepOutput
from sslbench.methods.common import add_momentum_target, info_nce, target_forward, target_pairs


@dataclass
class MoCoConfig:
    name: str = "moco"
    temperature: float = bounded(0.2, lo=0.0, lo_open=True)  # τ of eq. 1 (0.2 in MoCo v2)
    # K: 65536 on ImageNet; 4096 here so the queue holds fresh keys after 16 steps of 256.
    queue_size: int = bounded(4096, lo=1)
    ema_decay: float = bounded(0.99, lo=0.0, hi=1.0)  # m of eq. 2 (0.999 on ImageNet, 0.99 CIFAR)
    ema_final: float = bounded(1.0, lo=0.0, hi=1.0)  # m at the last step (cosine schedule)
    symmetric: bool = False  # also use view 2 as query against view 1's key


def moco_loss(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor,
              temperature: float) -> torch.Tensor:
    """MoCo eq. 1: L_q = −log( exp(q·k₊/τ) / Σ_{i=0}^{K} exp(q·k_i/τ) ), averaged over the
    queries; ``key`` (N, d) holds the positives k₊ and ``queue`` (K, d) the negatives.

    The key is detached: the key encoder gets no gradient (it follows the query encoder by
    momentum, eq. 2).
    """
    return info_nce(query, key.detach(), temperature, negatives=queue.detach())


@torch.no_grad()
def enqueue(queue: torch.Tensor, ptr: torch.Tensor, keys: torch.Tensor) -> None:
    """FIFO update in place: the N newest keys overwrite the N oldest entries (from ``ptr``,
    wrapping around), and ``ptr`` moves on by N. With N > K only the last K keys are kept."""
    size = queue.shape[0]
    keys = keys[-size:]
    idx = (ptr + torch.arange(keys.shape[0], device=queue.device)) % size
    queue[idx] = keys.to(queue.dtype)
    ptr.copy_((ptr + keys.shape[0]) % size)


class MoCo(Method):
    def __init__(self, cfg: RunConfig, backbone: nn.Module) -> None:
        super().__init__(cfg, backbone)
        m, c = cfg.model, cfg.method
        self.projector = self.make_projector(m)
        add_momentum_target(self)
        # Random unit keys until the first K keys have arrived, as in the reference code.
        self.register_buffer("queue", F.normalize(torch.randn(c.queue_size, m.projector_dim),
                                                  dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        q1, q2 = self.forward_views(lambda x: self.projector(self.backbone(x)), views)
        k1, k2 = self.forward_views(lambda x: F.normalize(target_forward(self, x), dim=1), views)
        if self.cfg.symmetric:
            loss = (moco_loss(q1, k2, self.queue, self.cfg.temperature)
                    + moco_loss(q2, k1, self.queue, self.cfg.temperature)) / 2
            new_keys = torch.cat([gather(k1), gather(k2)])
        else:
            loss = moco_loss(q1, k2, self.queue, self.cfg.temperature)
            new_keys = gather(k2)
        # The queue changes after the loss has used it (autograd saved a normalised copy). It is
        # fed the keys of the global batch: one queue, identical on every rank. The loss stays
        # per rank (a mean over its queries; DDP's mean over ranks is the global mean).
        enqueue(self.queue, self.queue_ptr, new_keys)
        return loss, {}

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return target_pairs(self)


SPEC = MethodSpec(
    name="moco",
    paper="He et al., Momentum Contrast for Unsupervised Visual Representation Learning, "
          "CVPR 2020; Chen et al., Improved Baselines with Momentum Contrastive Learning, 2020",
    family="contrastive",
    config_cls=MoCoConfig,
    method_cls=MoCo,
    losses=(moco_loss, info_nce),
)
