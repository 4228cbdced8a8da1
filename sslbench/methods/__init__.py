"""Method registry: the name used on the command line → the module that implements it.

A method module defines its config dataclass (with a ``name`` field and each hyperparameter's
range), a :class:`~sslbench.methods.base.Method` subclass (its heads, ``training_step(views)``,
its momentum pairs, its parameter groups) and a module-level ``SPEC`` (:class:`MethodSpec`).
Adding a method = one file + one line in ``_MODULES`` + its test (``docs/adding-a-method.md``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sslbench.errors import ConfigError

if TYPE_CHECKING:
    from sslbench.config import RunConfig
    from sslbench.methods.base import Method

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
    "dino": "sslbench.methods.dino",
    "infomax": "sslbench.methods.infomax",
    "er": "sslbench.methods.er",
}

FAMILIES = ("contrastive", "distillation", "redundancy reduction", "clustering",
            "mutual information")


@dataclass(frozen=True)
class MethodSpec:
    """What the registry knows of a method.

    ``defaults``: dotted overrides of the global defaults that the method's paper calls for
    (e.g. a wider projector), applied before the dataset's defaults and the user's keys.
    ``losses``: the pure loss functions it implements (tensors in, scalar out), the public API
    of :mod:`sslbench.losses`.
    """

    name: str
    paper: str
    family: str  # one of FAMILIES
    config_cls: type
    method_cls: type[Method]
    defaults: dict[str, Any] = field(default_factory=dict)
    losses: tuple[Callable[..., Any], ...] = ()


def method_names() -> list[str]:
    return sorted(_MODULES)


def get_method_spec(name: str) -> MethodSpec:
    """The spec of a registered method; an unknown name is a one-line ConfigError."""
    if name not in _MODULES:
        raise ConfigError(f"unknown method {name!r}: choose one of {', '.join(method_names())}")
    spec: MethodSpec = importlib.import_module(_MODULES[name]).SPEC
    return spec


def build_method(cfg: RunConfig, in_channels: int) -> Method:
    """Backbone + the method's heads, from a resolved :class:`~sslbench.config.RunConfig`."""
    from sslbench.models import build_backbone

    backbone = build_backbone(cfg.model, in_channels)
    return get_method_spec(cfg.method_name).method_cls(cfg, backbone)
