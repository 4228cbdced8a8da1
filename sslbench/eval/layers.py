"""Where a representation is read: the backbone output, an earlier stage, or the projector.

Probing results depend on the layer (SimCLR, Chen et al. 2020, sec. 4.2 and fig. 8: the
representation before the projection head is better than after it), so ``--layer`` picks it:

- ``backbone``: the pooled backbone output (default, what papers report);
- ``stageN``: the output of the backbone's first N stages, globally average-pooled;
- ``projector``: the projection head's output (backbone → projector).

A spatial layer takes a readout suffix: ``backbone:gridK`` / ``stageN:gridK`` average-pools the
last feature map to K×K cells and flattens them (C·K² features) instead of the global average
(``:gap``, the default). A small backbone's global pool can cap what a probe reads: on
Fashion-MNIST the ConvNet's 128-d average keeps no position, the 3×3 grid keeps where each
feature fired (see docs/evaluation.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslbench.config import LAYER_HELP, LAYER_PATTERN, parse_layer
from sslbench.errors import UserError


def check_layer_name(layer: str) -> None:
    """Syntax check, without a model: a UserError for anything but backbone/projector/stageN
    with an optional :gap/:gridK readout (none on the projector)."""
    if not LAYER_PATTERN.match(layer) or layer.startswith("projector:grid"):
        raise UserError(f"unknown layer {layer!r}: choose {LAYER_HELP} (the projector's output "
                        "has no grid)")


class StageReadout(nn.Module):
    """The first ``num_stages`` stages of a backbone (after its stem, if any), average-pooled to
    ``grid`` × ``grid`` cells and flattened (``grid`` 1: the global average)."""

    def __init__(self, backbone: nn.Module, num_stages: int, grid: int = 1) -> None:
        super().__init__()
        stem = getattr(backbone, "stem", None)
        self.stem = stem if isinstance(stem, nn.Module) else nn.Identity()
        self.stages = backbone.stages[:num_stages]
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.stages(self.stem(x)), self.grid).flatten(1)


def feature_module(method: nn.Module, layer: str) -> nn.Module:
    """The module mapping images to the features of ``layer`` (sharing ``method``'s weights)."""
    check_layer_name(layer)
    base, grid = parse_layer(layer)
    backbone = method.backbone
    if base == "backbone" and grid == 1:
        return backbone
    if base == "projector":
        projector = getattr(method, "projector", None)
        if not isinstance(projector, nn.Module):
            raise UserError(f"layer 'projector': method {type(method).__name__} has no projector")
        return nn.Sequential(backbone, projector)
    stages = getattr(backbone, "stages", None)
    if not isinstance(stages, nn.Sequential):
        raise UserError(f"layer {layer!r}: backbone {type(backbone).__name__} has no stages")
    n = len(stages) if base == "backbone" else int(base.removeprefix("stage"))
    if n > len(stages):
        raise UserError(f"layer {layer!r}: backbone {type(backbone).__name__} has "
                        f"{len(stages)} stages (stage1..stage{len(stages)})")
    return StageReadout(backbone, n, grid)
