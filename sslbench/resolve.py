"""Resolving a run's config against the registries: which defaults apply, in which order.

A config is resolved once, at the edge, from these layers (later wins):

1. the dataclass defaults (:mod:`sslbench.config.schema`);
2. the method's defaults (its ``MethodSpec.defaults``, e.g. BYOL's learning rate);
3. the dataset's defaults (``DATASET_DEFAULTS``, e.g. a tiny model for ``synthetic``);
4. ``--recipe NAME``: the shipped recipe file of the method (:mod:`sslbench.config.recipes`);
5. ``--config FILE.yaml`` (nested mappings or dotted keys);
6. command-line flags (``--epochs``, ``--batch-size``, ...);
7. ``key=value`` overrides.

Every value is coerced and range-checked by :mod:`sslbench.config.parse`; the checks that need
the method's class (does it take multi-crop views?) are made here. Looking a method up imports
its module, and with it torch: the commands that resolve a config are about to run one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sslbench.config import (
    DATASET_DEFAULTS,
    DataConfig,
    RunConfig,
    SupervisedConfig,
    build_config,
    flatten,
    load_yaml_file,
    parse_overrides,
)
from sslbench.config.recipes import recipe_path
from sslbench.data.registry import DATASETS
from sslbench.errors import ConfigError
from sslbench.methods import get_method_spec, method_names

# Keys that older sslbench versions stored and where they live now (a stored run's config is
# rebuilt with these renamed, so its encoder can still be evaluated).
_MOVED_KEYS = {
    "method.num_small_crops": "augment.small_crops",
    "method.small_crop_size": "augment.small_crop_size",
    "method.small_crop_min_scale": "augment.small_crop_min_scale",
    "method.small_crop_max_scale": "augment.small_crop_max_scale",
    # infomax: one width for both critics until the separable one got the paper's own (100)
    "method.critic_hidden_dim": "method.mlp_critic_hidden_dim",
}


def resolve_config(
    method: str | None,
    *,
    config_file: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    recipe: str | None = None,
) -> RunConfig:
    """The validated :class:`RunConfig` for ``method`` from every layer (see module doc).

    ``method`` None resolves the config of the supervised baseline: the data, model, training
    and evaluation sections as a pretraining run would have them, and no method section.
    """
    spec = get_method_spec(method) if method is not None else None
    if recipe is not None and method is None:
        raise ConfigError(f"--recipe {recipe}: a recipe is written for one method; the "
                          "supervised baseline takes --config instead")
    recipe_layer = (load_yaml_file(recipe_path(recipe, method))
                    if recipe is not None and method is not None else {})
    file_layer = load_yaml_file(config_file) if config_file is not None else {}
    flag_layer = {k: v for k, v in (flags or {}).items() if v is not None}
    override_layer = parse_overrides(overrides or [])
    layers = (recipe_layer, file_layer, flag_layer, override_layer)
    for layer in layers:
        if "method.name" in layer and str(layer["method.name"]) != method:
            raise ConfigError(f"method.name cannot be changed here ({method!r} was chosen); "
                              f"run `sslbench pretrain {layer['method.name']}` instead")

    dataset = DataConfig.dataset
    for layer in layers:
        dataset = str(layer.get("data.dataset", dataset))
    check_dataset(dataset)

    values: dict[str, Any] = {}
    for layer in (spec.defaults if spec else {}, DATASET_DEFAULTS.get(dataset, {}), *layers):
        values.update(layer)
    values.pop("method.name", None)
    cfg = build_config(spec.config_cls if spec else SupervisedConfig, values)
    _check_views(cfg, spec.method_cls if spec else None)
    return cfg


def config_from_dict(config: dict[str, Any]) -> RunConfig:
    """Rebuild a stored (resolved) config, e.g. to re-evaluate or resume a run."""
    flat = flatten(config)
    for old, new in _MOVED_KEYS.items():
        if old in flat:
            flat.setdefault(new, flat.pop(old))
    name = str(flat.pop("method.name"))
    if name == SupervisedConfig.name:
        return build_config(SupervisedConfig, flat)
    spec = get_method_spec(name)
    cfg = build_config(spec.config_cls, flat)
    _check_views(cfg, spec.method_cls)
    return cfg


def check_dataset(name: str) -> None:
    """An unknown dataset name is a one-line ConfigError."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}: choose one of {', '.join(sorted(DATASETS))}")


def _check_views(cfg: RunConfig, method_cls: type | None) -> None:
    shared = getattr(method_cls, "default_views_mode", None) is not None
    if cfg.model.forward_views is not None and not shared:
        raise ConfigError(f"model.forward_views={cfg.model.forward_views}: {cfg.method_name} "
                          "sends its views through its own networks; leave the key unset")
    if cfg.augment.small_crops and not getattr(method_cls, "multi_crop", False):
        takers = [n for n in method_names() if get_method_spec(n).method_cls.multi_crop]
        raise ConfigError(f"augment.small_crops={cfg.augment.small_crops}: {cfg.method_name} "
                          f"trains on two views only (multi-crop: {', '.join(takers)})")
