"""The contract between a method and the training loop, with its default hooks.

A method is an ``nn.Module`` holding a ``backbone`` (what evaluation probes) and its own heads.
The loop calls, every step::

    loss, logs = method.training_step(views)       # views: [B, C, H, W] tensors, see below
    ... backward, optimizer step ...
    logs = method.on_train_step_end(step, total_steps)

``views`` holds the two global views of the batch, then ``augment.small_crops`` low-resolution
crops of it (multi-crop, made by :mod:`sslbench.data.augment`) for a method whose ``multi_crop``
is true; the others always get exactly two. A method sends them through its networks with
:meth:`Method.forward_views`, which is where ``model.forward_views`` (joint or separate passes,
hence BatchNorm statistics over all views or per view) takes effect, once for every method.

The default ``on_train_step_end`` moves every ``(online, target)`` pair of
:meth:`Method.momentum_pairs` towards its online module by exponential moving average, τ
following BYOL's cosine schedule from ``method.ema_decay`` to ``method.ema_final`` (Grill et al.
2020, §3.2): declaring the pairs is all a momentum method does.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from sslbench.config import ModelConfig, RunConfig
from sslbench.models.ema import cosine_ema_decay, ema_update
from sslbench.models.heads import MLP

StepOutput = tuple[torch.Tensor, dict[str, torch.Tensor]]


class Method(nn.Module, abc.ABC):
    """Base of every method: the backbone, the method's hyperparameters (``self.cfg``, the
    ``method.*`` section) and the hooks above.

    Class attributes a method may set: ``multi_crop`` (it takes small crops),
    ``ddp_find_unused_parameters`` (some of its steps leave a parameter without gradient, e.g.
    SwAV's frozen prototypes, which DistributedDataParallel must be told), and
    ``default_views_mode``, how its reference forwards the views when ``model.forward_views`` is
    not set (None: its views go through different networks, and the key does not apply).
    """

    multi_crop: ClassVar[bool] = False
    ddp_find_unused_parameters: ClassVar[bool] = False
    default_views_mode: ClassVar[Literal["joint", "separate"] | None] = "joint"

    def __init__(self, cfg: RunConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.cfg: Any = cfg.method
        self.backbone = backbone
        self.views_mode = cfg.model.forward_views or self.default_views_mode

    def forward_views(self, network: Callable[[torch.Tensor], torch.Tensor],
                      views: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``network`` applied to each of ``views``, one output per view.

        ``joint``: the two global views in one pass, concatenated along the batch, and the small
        crops (one size) in another, as SimCLR's TensorFlow code does; every BatchNorm then
        normalises over all the views of the pass. ``separate``: one pass per view, so the
        statistics are per view, as solo-learn and BYOL's JAX code (Grill et al. 2020). The
        two differ only through batch statistics: without BatchNorm they give the same outputs.
        """
        if self.views_mode == "separate":
            return [network(v) for v in views]
        outputs: list[torch.Tensor] = []
        for run in (views[:2], views[2:]):
            if run:
                outputs += network(torch.cat(list(run))).chunk(len(run))
        return outputs

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
