"""The contract between a method and the training loop, with its default hooks.

A method is an ``nn.Module`` holding a ``backbone`` (what evaluation probes) and its own heads.
The loop calls, every step::

    loss, logs = method.training_step(views)       # views: [B, C, H, W] tensors, see below
    ... backward, optimizer step ...
    logs = method.on_train_step_end(step, total_steps)

``views`` holds the two global views of the batch, then ``augment.small_crops`` low-resolution
crops of it (multi-crop, made by :mod:`sslbench.data.augment`) for a method whose ``multi_crop``
is true; the others always get exactly two. The default ``on_train_step_end`` moves every
``(online, target)`` pair of :meth:`Method.momentum_pairs` towards its online module by
exponential moving average, τ following BYOL's cosine schedule from ``method.ema_decay`` to
``method.ema_final`` (Grill et al. 2020, §3.2): declaring the pairs is all a momentum method does.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
from torch import nn

from sslbench.config import ModelConfig, RunConfig
from sslbench.models.ema import cosine_ema_decay, ema_update
from sslbench.models.heads import MLP

StepOutput = tuple[torch.Tensor, dict[str, torch.Tensor]]


class Method(nn.Module, abc.ABC):
    """Base of every method: the backbone, the method's hyperparameters (``self.cfg``, the
    ``method.*`` section) and the hooks above.

    Class attributes a method may set: ``multi_crop`` (it takes small crops), and
    ``ddp_find_unused_parameters`` (some of its steps leave a parameter without gradient, e.g.
    SwAV's frozen prototypes, which DistributedDataParallel must be told).
    """

    multi_crop: ClassVar[bool] = False
    ddp_find_unused_parameters: ClassVar[bool] = False

    def __init__(self, cfg: RunConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.cfg: Any = cfg.method
        self.backbone = backbone

    def make_projector(self, model: ModelConfig, **options: Any) -> MLP:
        """The projection head on the backbone, sized by ``model.projector_*``; ``options`` shape
        its last layer as the method's paper does (see :class:`~sslbench.models.heads.MLP`);
        ``model.projector_bn`` says whether its hidden layers have a BatchNorm."""
        return MLP(self.backbone.out_dim, model.projector_hidden_dim, model.projector_dim,
                   model.projector_layers, hidden_bn=model.projector_bn, **options)

    @abc.abstractmethod
    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        """The loss of one batch (a scalar to minimise) and tensors to log (detached)."""

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The ``(online, target)`` modules whose target follows the online one by EMA."""
        return []

    def on_train_step_end(self, step: int, total_steps: int) -> dict[str, float]:
        """After the optimizer step ``step`` of ``total_steps``: update the momentum targets;
        returns values to log (τ when there are targets)."""
        pairs = self.momentum_pairs()
        if not pairs:
            return {}
        tau = cosine_ema_decay(self.cfg.ema_decay, step, total_steps, self.cfg.ema_final)
        for online, target in pairs:
            ema_update(target, online, tau)
        return {"ema_decay": tau}

    def param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups for the optimizer; ``lr_mult`` scales a group's learning rate (see
        :func:`sslbench.train.optim.param_groups`)."""
        return [{"params": list(self.parameters())}]
