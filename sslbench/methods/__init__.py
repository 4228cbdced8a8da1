"""Method registry: the name used on the command line → the module that implements it.

A method module defines its config dataclass (with a ``name`` field), its ``DEFAULTS`` (dotted
overrides of the global defaults, from its paper), a ``build(cfg, backbone)`` returning an
``nn.Module`` with ``training_step(view1, view2) -> (loss, logs)`` and
``on_train_step_end(step, total_steps) -> logs``, and a module-level ``SPEC``.
Adding a method = one file + one line here + its tests.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sslbench.errors import ConfigError

_MODULES: dict[str, str] = {
    "simclr": "sslbench.methods.simclr",
    "byol": "sslbench.methods.byol",
    "moco": "sslbench.methods.moco",
    "mocov3": "sslbench.methods.mocov3",
    "simsiam": "sslbench.methods.simsiam",
    "directpred": "sslbench.methods.directpred",
    "align_uniform": "sslbench.methods.align_uniform",
    "barlow": "sslbench.methods.barlow",
    "vicreg": "sslbench.methods.vicreg",
    "swav": "sslbench.methods.swav",
    "infomax": "sslbench.methods.infomax",
    "er": "sslbench.methods.er",
}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    paper: str
    # contrastive | distillation | redundancy reduction | clustering | mutual information
    family: str
    config_cls: type
    build: Callable[..., Any]
    defaults: dict[str, Any] = field(default_factory=dict)


def method_names() -> list[str]:
    return sorted(_MODULES)


def get_method_spec(name: str) -> MethodSpec:
    """The spec of a registered method; an unknown name is a one-line ConfigError."""
    if name not in _MODULES:
        raise ConfigError(f"unknown method {name!r}: choose one of {', '.join(method_names())}")
    spec: MethodSpec = importlib.import_module(_MODULES[name]).SPEC
    return spec


def build_method(cfg: Any, in_channels: int) -> Any:
    """Backbone + the method's heads, from a resolved :class:`~sslbench.config.RunConfig`."""
    from sslbench.models import build_backbone

    backbone = build_backbone(cfg.model, in_channels)
    return get_method_spec(cfg.method_name).build(cfg, backbone)
