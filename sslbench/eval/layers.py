"""Where a representation is read: the backbone output, an earlier stage, or the projector.

Probing results depend on the layer (SimCLR, Chen et al. 2020, sec. 4.2 and fig. 8: the
representation before the projection head is better than after it), so ``--layer`` picks it:

- ``backbone``: the pooled backbone output (default, what papers report);
- ``stageN``: the output of the backbone's first N stages, globally average-pooled;
- ``projector``: the projection head's output (backbone → projector).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslbench.config import LAYER_PATTERN
from sslbench.errors import UserError


def check_layer_name(layer: str) -> None:
    """Syntax check, without a model: a UserError for anything but backbone/projector/stageN."""
    if not LAYER_PATTERN.match(layer):
        raise UserError(f"unknown layer {layer!r}: choose backbone, projector or stageN "
                        "(N = 1 for the first stage of the backbone)")


class StageReadout(nn.Module):
    """The first ``num_stages`` stages of a backbone (after its stem, if any), average-pooled."""

    def __init__(self, backbone: nn.Module, num_stages: int) -> None:
        super().__init__()
        stem = getattr(backbone, "stem", None)
        self.stem = stem if isinstance(stem, nn.Module) else nn.Identity()
        self.stages = backbone.stages[:num_stages]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1).flatten(1)


def feature_module(method: nn.Module, layer: str) -> nn.Module:
    """The module mapping images to the features of ``layer`` (sharing ``method``'s weights)."""
    check_layer_name(layer)
    backbone = method.backbone
    if layer == "backbone":
        return backbone
    if layer == "projector":
        projector = getattr(method, "projector", None)
        if not isinstance(projector, nn.Module):
            raise UserError(f"layer 'projector': method {type(method).__name__} has no projector")
        return nn.Sequential(backbone, projector)
    stages = getattr(backbone, "stages", None)
    n = int(layer.removeprefix("stage"))
    if not isinstance(stages, nn.Sequential):
        raise UserError(f"layer {layer!r}: backbone {type(backbone).__name__} has no stages")
    if n > len(stages):
        raise UserError(f"layer {layer!r}: backbone {type(backbone).__name__} has "
                        f"{len(stages)} stages (stage1..stage{len(stages)})")
    return StageReadout(backbone, n)
