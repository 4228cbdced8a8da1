"""Typed run configuration: defaults, YAML files, dotted ``key=value`` overrides, validation.

A config is resolved once, at the edge, in this order (later wins):

1. the dataclass defaults below;
2. the method's defaults (``DEFAULTS`` in its module, e.g. BYOL's learning rate);
3. the dataset's defaults (``DATASET_DEFAULTS`` below, e.g. a tiny model for ``synthetic``);
4. ``--config FILE.yaml`` (nested mappings or dotted keys);
5. command-line flags (``--epochs``, ``--batch-size``, ...);
6. ``key=value`` overrides.

Every value is coerced to its field's type and checked against the field's range; any problem is
a :class:`~sslbench.errors.ConfigError` with a one-line message. Inner code trusts the result.
This module does not import torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sslbench.errors import ConfigError


def _range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False) -> dict[str, Any]:
    return {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open}


def _f(default: Any, **limits: Any) -> Any:
    """A dataclass field with a validated range (``lo``/``hi``, open or closed)."""
    return field(default=default, metadata=_range(**limits))


@dataclass
class DataConfig:
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = True


@dataclass
class AugmentConfig:
    """Per-sample augmentation applied to whole batches (see ``sslbench.data.augment``)."""

    crop_min_scale: float = _f(0.25, lo=0.0, hi=1.0, lo_open=True)
    crop_max_scale: float = _f(1.0, lo=0.0, hi=1.0, lo_open=True)
    crop_min_ratio: float = _f(0.75, lo=0.0, lo_open=True)
    crop_max_ratio: float = _f(4 / 3, lo=0.0, lo_open=True)
    hflip_prob: float = _f(0.5, lo=0.0, hi=1.0)
    jitter_prob: float = _f(0.8, lo=0.0, hi=1.0)
    brightness: float = _f(0.4, lo=0.0, hi=1.0)
    contrast: float = _f(0.4, lo=0.0, hi=1.0)
    blur_prob: float = _f(0.0, lo=0.0, hi=1.0)
    blur_sigma_min: float = _f(0.1, lo=0.0, lo_open=True)
    blur_sigma_max: float = _f(2.0, lo=0.0, lo_open=True)


@dataclass
class ModelConfig:
    backbone: Literal["convnet", "resnet18"] = "convnet"
    width: int = _f(64, lo=1)  # base channel count (ConvNet) or width of the first stage (ResNet)
    projector_hidden_dim: int = _f(512, lo=1)
    projector_dim: int = _f(128, lo=1)
    projector_layers: int = _f(2, lo=1)


@dataclass
class OptimizerConfig:
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = _f(2e-3, lo=0.0, lo_open=True)
    weight_decay: float = _f(1e-4, lo=0.0)
    momentum: float = _f(0.9, lo=0.0, hi=1.0, hi_open=True)
    warmup_epochs: float = _f(1.0, lo=0.0)
    min_lr_ratio: float = _f(0.0, lo=0.0, hi=1.0)  # cosine decays to lr * min_lr_ratio
    grad_clip: float = _f(0.0, lo=0.0)  # max global grad norm; 0 disables clipping


@dataclass
class TrainConfig:
    epochs: int = _f(10, lo=1)
    batch_size: int = _f(256, lo=2)
    seed: int = _f(0, lo=0)
    gpus: int | None = _f(None, lo=0)  # None: a GPU if there is one; 0: CPU
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # on CUDA
    log_every: int = _f(50, lo=1)  # steps between progress updates (no per-step host syncs)
    output_dir: str = "runs"  # checkpoints go to OUTPUT_DIR/<run id>/


@dataclass
class LinearEvalConfig:
    """Linear probe on frozen, standardised features (train split → test split)."""

    epochs: int = _f(100, lo=1)
    lr: float = _f(1e-2, lo=0.0, lo_open=True)
    weight_decay: float = _f(1e-5, lo=0.0)
    batch_size: int = _f(1024, lo=1)


@dataclass
class EvalConfig:
    protocols: list[str] = field(default_factory=lambda: ["linear"])
    linear: LinearEvalConfig = field(default_factory=LinearEvalConfig)


EVAL_PROTOCOLS = ("linear",)


@dataclass
class RunConfig:
    method: Any  # the method's own dataclass; its ``name`` field says which
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def method_name(self) -> str:
        return str(self.method.name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def config_hash(self) -> str:
        return config_hash(self.to_dict())


# A tiny, fast setup for the synthetic dataset (tests, smoke runs).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    # Sized for the CPU: SimCLR reaches ~86 % linear top-1 in ~4 minutes on 2 cores.
    "fashion-mnist": {
        "model.width": 32,
        "train.epochs": 3,
    },
    "synthetic": {
        "model.width": 16,
        "model.projector_hidden_dim": 64,
        "model.projector_dim": 32,
        "train.epochs": 2,
        "train.batch_size": 64,
        "eval.linear.epochs": 10,
    },
}


def config_hash(config: dict[str, Any]) -> str:
    """Short sha256 of the canonical JSON of a resolved config."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Parsing and resolution


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["optimizer.lr=2e-3", "method.ema_decay=0.996"]`` → ``{"optimizer.lr": "2e-3", ...}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value "
                              "(e.g. optimizer.lr=2e-3)")
        out[key] = value.strip()
    return out


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping → dotted keys. Dotted keys in the input are kept as they are."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    """Read a config file (YAML mapping, nested or dotted keys) with ``yaml.safe_load``."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {str(p)!r} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of keys to values")
    return flatten(data)


def resolve_config(
    method: str,
    *,
    config_file: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
) -> RunConfig:
    """Build the validated :class:`RunConfig` for ``method`` from every layer (see module doc)."""
    from sslbench.methods import get_method_spec

    file_layer = load_yaml_file(config_file) if config_file is not None else {}
    flag_layer = {k: v for k, v in (flags or {}).items() if v is not None}
    override_layer = parse_overrides(overrides or [])
    for layer in (file_layer, flag_layer, override_layer):
        if "method.name" in layer and str(layer["method.name"]) != method:
            raise ConfigError(f"method.name cannot be changed here ({method!r} was chosen); "
                              f"run `sslbench pretrain {layer['method.name']}` instead")
    spec = get_method_spec(method)

    dataset = DataConfig.dataset
    for layer in (file_layer, flag_layer, override_layer):
        dataset = str(layer.get("data.dataset", dataset))
    _check_dataset(dataset)

    values: dict[str, Any] = {}
    for layer in (spec.defaults, DATASET_DEFAULTS.get(dataset, {}), file_layer, flag_layer,
                  override_layer):
        values.update(layer)
    values.pop("method.name", None)
    return build_config(spec.config_cls, values)


def config_from_dict(config: dict[str, Any]) -> RunConfig:
    """Rebuild a stored (resolved) config, e.g. to re-evaluate a run's encoder."""
    from sslbench.methods import get_method_spec

    flat = flatten(config)
    spec = get_method_spec(str(flat.pop("method.name")))
    return build_config(spec.config_cls, flat)


def build_config(method_cls: type, values: dict[str, Any]) -> RunConfig:
    """Apply dotted ``values`` onto the defaults, coercing and validating every key."""
    cfg = RunConfig(method=method_cls())
    for key, raw in values.items():
        _set_key(cfg, key, raw)
    _validate(cfg, "")
    _cross_checks(cfg)
    return cfg


def _check_dataset(name: str) -> None:
    from sslbench.data.registry import DATASETS

    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}: choose one of {', '.join(sorted(DATASETS))}")


def _set_key(cfg: RunConfig, key: str, raw: Any) -> None:
    parts = key.split(".")
    node: Any = cfg
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(node)}
        if part not in fields:
            where = ".".join(parts[:i]) or "the config"
            known = ", ".join(sorted(n for n in fields if n != "name"))
            raise ConfigError(f"unknown config key {key!r}: {where} has {known}")
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(getattr(node, part)):
                raise ConfigError(f"config key {key!r} is a section; set one of its keys "
                                  f"(e.g. {key}.{dataclasses.fields(getattr(node, part))[0].name})")
            hints = typing.get_type_hints(type(node))
            setattr(node, part, _coerce(key, raw, hints[part]))
            return
        node = getattr(node, part)
        if not dataclasses.is_dataclass(node):
            raise ConfigError(f"unknown config key {key!r}: {'.'.join(parts[: i + 1])} is a value, "
                              "not a section")


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce(key: str, raw: Any, tp: Any) -> Any:
    """Convert ``raw`` (from YAML or the command line) to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        is_none = raw is None or (isinstance(raw, str) and raw.lower() in {"none", "null", ""})
        if is_none and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, raw, inner[0])
    if origin is Literal:
        value = str(raw)
        if value not in args:
            raise ConfigError(f"{key}={raw!r} is not allowed: choose one of "
                              f"{', '.join(map(str, args))}")
        return value
    if origin is list:
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list):
            raise ConfigError(f"{key}={raw!r} must be a list (comma-separated on the command line)")
        return [_coerce(key, x.strip() if isinstance(x, str) else x, args[0]) for x in items
                if not (isinstance(x, str) and not x.strip())]
    bad = ConfigError(f"{key}={raw!r} is not a valid {getattr(tp, '__name__', tp)}")
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise bad
    if tp is int:
        if isinstance(raw, bool):
            raise bad
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        try:
            return int(str(raw))
        except ValueError:
            raise bad from None
    if tp is float:
        if isinstance(raw, bool):
            raise bad
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(value):
            raise ConfigError(f"{key}={raw!r} must be a finite number")
        return value
    if tp is str:
        if isinstance(raw, dict | list):
            raise bad
        return str(raw)
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # a programming error, shown plainly


def _validate(node: Any, prefix: str) -> None:
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _validate(value, f"{key}.")
            continue
        lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
        if value is None or (lo is None and hi is None):
            continue
        lo_open, hi_open = f.metadata.get("lo_open"), f.metadata.get("hi_open")
        too_low = lo is not None and (value <= lo if lo_open else value < lo)
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if too_low or too_high:
            left = "(" if lo_open else "["
            right = ")" if hi_open else "]"
            interval = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
            raise ConfigError(f"{key}={value} is out of range: must be in {interval}")


def _cross_checks(cfg: RunConfig) -> None:
    aug = cfg.augment
    if aug.crop_min_scale > aug.crop_max_scale:
        raise ConfigError(f"augment.crop_min_scale={aug.crop_min_scale} is larger than "
                          f"augment.crop_max_scale={aug.crop_max_scale}")
    if aug.crop_min_ratio > aug.crop_max_ratio:
        raise ConfigError(f"augment.crop_min_ratio={aug.crop_min_ratio} is larger than "
                          f"augment.crop_max_ratio={aug.crop_max_ratio}")
    if aug.blur_sigma_min > aug.blur_sigma_max:
        raise ConfigError(f"augment.blur_sigma_min={aug.blur_sigma_min} is larger than "
                          f"augment.blur_sigma_max={aug.blur_sigma_max}")
    for protocol in cfg.eval.protocols:
        if protocol not in EVAL_PROTOCOLS:
            raise ConfigError(f"unknown evaluation protocol {protocol!r}: choose from "
                              f"{', '.join(EVAL_PROTOCOLS)}")
    validate_method = getattr(cfg.method, "validate", None)
    if validate_method is not None:
        validate_method()


def validate_section(node: Any, prefix: str) -> None:
    """Range-check one config section (methods call this on their own dataclass)."""
    _validate(node, prefix)


def to_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML, for ``--dry-run`` and ``runs show``."""
    import yaml

    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=False)
