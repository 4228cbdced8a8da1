"""BatchNorm over the global batch of a distributed run (the "global BN" of SimCLR §2.2 and the
SyncBatchNorm of the BYOL / Barlow Twins / VICReg / SwAV / SimSiam / MoCo v3 reference code).

:class:`GlobalBatchNorm` works with gloo on the CPU, which ``torch.nn.SyncBatchNorm`` does not, so
the same code is tested here and runs on GPUs; its state dict is a BatchNorm's.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from sslbench.distributed.collectives import gather, is_distributed, world_size


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm (Ioffe & Szegedy 2015, Alg. 1) whose batch is the global one: in training mode
    in a distributed run, each rank's per-channel mean and biased variance are gathered (with
    gradients, :func:`gather`) and combined exactly; the W ranks hold equal shards of n values
    per channel, so with N = W·n

        μ = (1/W) Σ_r μ_r,   σ² = (1/W) Σ_r (σ_r² + (μ_r − μ)²),

    then x̂ = (x − μ) / sqrt(σ² + ε) and the running estimates take the unbiased σ²·N/(N − 1), as
    ``torch.nn.BatchNorm*d`` on the concatenated batch. Otherwise (one process, eval mode) it is
    that BatchNorm. Statistics in float32 whatever the autocast dtype; no host sync.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.float()
        mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)
        stats = gather(torch.stack([mean, var])[None])  # [W, 2, C]
        g_mean = stats[:, 0].mean(dim=0)
        g_var = (stats[:, 1] + (stats[:, 0] - g_mean).pow(2)).mean(dim=0)
        if self.track_running_stats:
            n = x.numel() // x.shape[1] * world_size()
            self._update_running_stats(g_mean.detach(), g_var.detach(), n)
        y = (x - g_mean.view(shape)) * torch.rsqrt(g_var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        # momentum None: cumulative moving average, as torch's BatchNorm
        factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                  else self.momentum)
        unbiased = var * (n / max(n - 1, 1))
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm of ``module`` as a :class:`GlobalBatchNorm` sharing its parameters and
    buffers (the optimizer and the state dict keep working); returns the converted module."""
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        converted = GlobalBatchNorm(module.num_features, module.eps, module.momentum,
                                    module.affine, module.track_running_stats)
        _share_state(module, converted)
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_batchnorm(child))
    return module


def revert_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`convert_batchnorm`: plain ``BatchNorm1d/2d/3d`` again (by input rank)."""
    if isinstance(module, GlobalBatchNorm):
        dims = getattr(module, "_input_dims", 2)
        cls = {3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(dims, nn.BatchNorm1d)
        plain = cls(module.num_features, module.eps, module.momentum, module.affine,
                    module.track_running_stats)
        _share_state(module, plain)
        return plain
    for name, child in module.named_children():
        module.add_module(name, revert_batchnorm(child))
    return module


def _share_state(src: _BatchNorm, dst: _BatchNorm) -> None:
    if src.affine:
        dst.weight, dst.bias = src.weight, src.bias
    if src.track_running_stats:
        dst.running_mean, dst.running_var = src.running_mean, src.running_var
        dst.num_batches_tracked = src.num_batches_tracked
    dst.train(src.training)
    # BatchNorm1d vs 2d only differ in the input check: remember which one to give back
    dst._input_dims = {nn.BatchNorm2d: 4, nn.BatchNorm3d: 5}.get(type(src), 3)
