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
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sslbench.errors import ConfigError, UserError


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
    # imagefolder only: a file naming the class folders to use, one per line (None: all of them),
    # and the side the images are resized to (centre crop of the shorter side; None: 96)
    class_list: str | None = None
    image_size: int | None = _f(None, lo=8)


@dataclass
class ViewAugmentConfig:
    """The augmentation of one view, applied per sample to whole batches (see
    ``sslbench.data.augment``). Saturation, hue and grayscale act on RGB data only."""

    crop_min_scale: float = _f(0.25, lo=0.0, hi=1.0, lo_open=True)
    crop_max_scale: float = _f(1.0, lo=0.0, hi=1.0, lo_open=True)
    crop_min_ratio: float = _f(0.75, lo=0.0, lo_open=True)
    crop_max_ratio: float = _f(4 / 3, lo=0.0, lo_open=True)
    hflip_prob: float = _f(0.5, lo=0.0, hi=1.0)
    rotation_prob: float = _f(0.0, lo=0.0, hi=1.0)
    rotation_degrees: float = _f(30.0, lo=0.0, hi=180.0)  # angle uniform in ±degrees
    jitter_prob: float = _f(0.8, lo=0.0, hi=1.0)  # brightness, contrast, saturation, hue together
    brightness: float = _f(0.4, lo=0.0, hi=1.0)
    contrast: float = _f(0.4, lo=0.0, hi=1.0)
    saturation: float = _f(0.0, lo=0.0, hi=1.0)
    hue: float = _f(0.0, lo=0.0, hi=0.5)  # fraction of a full turn of the hue circle
    grayscale_prob: float = _f(0.0, lo=0.0, hi=1.0)
    blur_prob: float = _f(0.0, lo=0.0, hi=1.0)
    blur_sigma_min: float = _f(0.1, lo=0.0, lo_open=True)
    blur_sigma_max: float = _f(2.0, lo=0.0, lo_open=True)
    solarize_prob: float = _f(0.0, lo=0.0, hi=1.0)  # pixels ≥ 0.5 become 1 - pixel


# Every ViewAugmentConfig key as ``T | None`` with the same range; None keeps ``augment.KEY``.
ViewOverrides = dataclasses.make_dataclass(
    "ViewOverrides",
    [(f.name, typing.get_type_hints(ViewAugmentConfig)[f.name] | None,
      field(default=None, metadata=f.metadata)) for f in dataclasses.fields(ViewAugmentConfig)],
    namespace={"__doc__": "Per-view overrides of the shared ``augment.*`` keys (None: shared).",
               "__module__": __name__},
)


@dataclass
class AugmentConfig(ViewAugmentConfig):
    """``augment.KEY`` sets both views; ``augment.view1.KEY`` / ``augment.view2.KEY`` override it
    for one view, e.g. BYOL's asymmetric recipe (Grill et al. 2020, table 6)::

        augment.view1.blur_prob=1.0 augment.view2.blur_prob=0.1 augment.view2.solarize_prob=0.2
    """

    view1: ViewOverrides = field(default_factory=ViewOverrides)  # type: ignore[valid-type]
    view2: ViewOverrides = field(default_factory=ViewOverrides)  # type: ignore[valid-type]

    def view(self, index: int) -> ViewAugmentConfig:
        """The settings of view ``index`` (1 or 2): the shared keys with that view's overrides."""
        overrides = {"1": self.view1, "2": self.view2}[str(index)]
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(ViewAugmentConfig)}
        own = {k: v for k, v in dataclasses.asdict(overrides).items() if v is not None}
        return ViewAugmentConfig(**{**shared, **own})


@dataclass
class ModelConfig:
    backbone: Literal["convnet", "resnet18", "resnet50"] = "convnet"
    # base channel count (ConvNet) or width of the first stage (ResNet: 64 × the width multiplier)
    width: int = _f(64, lo=1)
    stem: Literal["cifar", "imagenet"] = "cifar"  # ResNet: 3×3 conv for small images, or 7×7/2
    projector_hidden_dim: int = _f(512, lo=1)
    projector_dim: int = _f(128, lo=1)
    projector_layers: int = _f(2, lo=1)


@dataclass
class OptimizerConfig:
    name: Literal["adamw", "sgd", "lars"] = "adamw"
    lr: float = _f(2e-3, lo=0.0, lo_open=True)
    weight_decay: float = _f(1e-4, lo=0.0)
    momentum: float = _f(0.9, lo=0.0, hi=1.0, hi_open=True)
    eta: float = _f(1e-3, lo=0.0, lo_open=True)  # LARS trust coefficient η (You et al. 2017)
    warmup_epochs: float = _f(1.0, lo=0.0)
    min_lr_ratio: float = _f(0.0, lo=0.0, hi=1.0)  # cosine decays to lr * min_lr_ratio
    grad_clip: float = _f(0.0, lo=0.0)  # max global grad norm; 0 disables clipping
    # lr for the global batch: "linear" uses lr * train.batch_size / reference_batch_size
    # (Goyal et al. 2017), "none" uses lr as given. Independent of the number of workers.
    lr_scaling: Literal["none", "linear"] = "none"
    reference_batch_size: int = _f(256, lo=1)


@dataclass
class TrainConfig:
    epochs: int = _f(10, lo=1)
    batch_size: int = _f(256, lo=2)
    seed: int = _f(0, lo=0)
    gpus: int | None = _f(None, lo=0)  # None: a GPU if there is one; 0: CPU; N: N GPU workers
    procs: int = _f(1, lo=1)  # CPU worker processes (gloo); batch_size is split across workers
    sync_batchnorm: bool = True  # distributed: every BatchNorm over the global batch
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # on CUDA
    compile: bool = False  # torch.compile the method's training step (first steps are slower)
    log_every: int = _f(50, lo=1)  # steps between progress updates (no per-step host syncs)
    output_dir: str = "runs"  # checkpoints go to OUTPUT_DIR/<run id>/


@dataclass
class LinearEvalConfig:
    """Linear probe on frozen, standardised features (train split → test split)."""

    epochs: int = _f(100, lo=1)
    lr: float = _f(1e-2, lo=0.0, lo_open=True)
    weight_decay: float = _f(1e-5, lo=0.0)
    batch_size: int = _f(1024, lo=1)
    batchnorm: bool = False  # a BatchNorm1d (no affine) in front of the layer
    augment: bool = False  # features of augmented train images, recomputed every step
    layer: str = "backbone"  # backbone, stageN or projector (see sslbench.eval.layers)


@dataclass
class KnnConfig:
    """Weighted kNN on l2-normalised features (Wu et al. 2018): k neighbours, temperature T."""

    k: int = _f(200, lo=1)
    temperature: float = _f(0.1, lo=0.0, lo_open=True)
    layer: str = "backbone"
    monitor_every: int = _f(1, lo=0)  # epochs between online kNN during pretraining; 0: off
    monitor_train_size: int = _f(10000, lo=1)  # train images used by the online monitor


@dataclass
class SemiSupervisedConfig:
    """Fine-tuning of the whole encoder + a linear head on a class-balanced label subset."""

    steps: int = _f(500, lo=1)  # optimizer steps, the same for every subset size
    batch_size: int = _f(128, lo=1)
    lr: float = _f(1e-3, lo=0.0, lo_open=True)
    weight_decay: float = _f(1e-4, lo=0.0)
    augment: bool = True  # random resized crop + flip
    split_seed: int = _f(0, lo=0)  # fixes the subsets (with the dataset and the label spec)


@dataclass
class DiagnosticsConfig:
    """Per-epoch collapse/rank/alignment/uniformity/InfoNCE on a fixed held-out batch."""

    enabled: bool = True
    batch_size: int = _f(512, lo=2)  # K of the InfoNCE estimate; log K is its ceiling
    temperature: float = _f(0.1, lo=0.0, lo_open=True)  # of the InfoNCE critic
    collapse_ratio: float = _f(0.1, lo=0.0)  # collapsed when std < collapse_ratio / sqrt(d)
    stop_on_collapse: bool = False
    # KDE entropy / ER bound / information bottleneck (sslbench.mi.entropy): the kernel, its
    # bandwidth (silverman, scott or a number; the vMF κ is 1/h²) and the vMF q's κ of the ER bound
    kde_kernel: Literal["vmf", "gaussian"] = "vmf"
    kde_bandwidth: str = "silverman"
    er_kappa: float = _f(10.0, lo=0.0, lo_open=True)


@dataclass
class EvalConfig:
    protocols: list[str] = field(default_factory=lambda: ["linear"])
    linear: LinearEvalConfig = field(default_factory=LinearEvalConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    semi: SemiSupervisedConfig = field(default_factory=SemiSupervisedConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)


EVAL_PROTOCOLS = ("linear", "knn", "semi:SPEC")  # SPEC: 1 (%), 10%, 0.05 or 10/class
LAYER_PATTERN = re.compile(r"^(backbone|projector|stage[1-9][0-9]*)$")


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
# SimCLR's colour recipe (Chen et al. 2020, appendix A): jitter 0.4/0.4/0.4/0.1 with p = 0.8,
# grayscale p = 0.2, crops from 8 % of the image; blur only for images of 96 px and more.
_RGB_AUGMENT: dict[str, Any] = {
    "augment.crop_min_scale": 0.08,
    "augment.saturation": 0.4,
    "augment.hue": 0.1,
    "augment.grayscale_prob": 0.2,
}
_RGB_96PX: dict[str, Any] = {
    **_RGB_AUGMENT,
    "augment.blur_prob": 0.5,
    "model.backbone": "resnet18",
    "model.stem": "imagenet",
}

DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    # Sized for the CPU: SimCLR reaches ~86 % linear top-1 in ~4 minutes on 2 cores.
    "fashion-mnist": {
        "model.width": 32,
        "train.epochs": 3,
    },
    "mnist": {
        "model.width": 32,
        "train.epochs": 3,
    },
    "cifar10": {**_RGB_AUGMENT, "model.backbone": "resnet18"},
    "cifar100": {**_RGB_AUGMENT, "model.backbone": "resnet18"},
    "stl10": _RGB_96PX,
    "imagefolder": _RGB_96PX,
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


def _check_augment_ranges(aug: AugmentConfig) -> None:
    """Each view's lower bounds must not exceed its upper bounds (shared keys or overrides)."""
    for index in (1, 2):
        view, overrides = aug.view(index), getattr(aug, f"view{index}")
        for low, high in (("crop_min_scale", "crop_max_scale"), ("crop_min_ratio",
                          "crop_max_ratio"), ("blur_sigma_min", "blur_sigma_max")):
            if getattr(view, low) > getattr(view, high):
                lo_key, hi_key = (f"augment.view{index}.{name}" if getattr(overrides, name)
                                  is not None else f"augment.{name}" for name in (low, high))
                raise ConfigError(f"{lo_key}={getattr(view, low)} is larger than "
                                  f"{hi_key}={getattr(view, high)}")


def _cross_checks(cfg: RunConfig) -> None:
    _check_augment_ranges(cfg.augment)
    if cfg.data.image_size is not None and cfg.data.dataset != "imagefolder":
        raise ConfigError(f"data.image_size={cfg.data.image_size} applies to the imagefolder "
                          f"dataset only; {cfg.data.dataset} images keep their own size")
    for protocol in cfg.eval.protocols:
        check_protocol(protocol)
    for key, layer in (("eval.linear.layer", cfg.eval.linear.layer),
                       ("eval.knn.layer", cfg.eval.knn.layer)):
        if not LAYER_PATTERN.match(layer):
            raise ConfigError(f"{key}={layer!r}: unknown layer; choose backbone, projector or "
                              "stageN (N = 1 for the first stage of the backbone)")
    check_bandwidth("eval.diagnostics.kde_bandwidth", cfg.eval.diagnostics.kde_bandwidth)
    validate_method = getattr(cfg.method, "validate", None)
    if validate_method is not None:
        validate_method()


KDE_BANDWIDTH_RULES = ("silverman", "scott")  # see sslbench.mi.entropy.select_bandwidth


def check_bandwidth(key: str, value: str) -> None:
    """A KDE bandwidth key (``sslbench.mi.entropy``): silverman, scott or a positive number."""
    if value in KDE_BANDWIDTH_RULES:
        return
    try:
        ok = math.isfinite(float(value)) and float(value) > 0
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"{key}={value!r}: choose silverman, scott or a positive number")


def check_protocol(protocol: str) -> None:
    """``linear``, ``knn`` or ``semi:SPEC`` with a valid label SPEC; a ConfigError otherwise."""
    from sslbench.eval.subsets import parse_semi_spec

    name, sep, spec = protocol.partition(":")
    if name in ("linear", "knn") and not sep:
        return
    if name == "semi" and sep:
        try:
            parse_semi_spec(spec)
        except UserError as exc:
            raise ConfigError(f"evaluation protocol {protocol!r}: {exc}") from None
        return
    raise ConfigError(f"unknown evaluation protocol {protocol!r}: choose from "
                      f"{', '.join(EVAL_PROTOCOLS)}")


def validate_section(node: Any, prefix: str) -> None:
    """Range-check one config section (methods call this on their own dataclass)."""
    _validate(node, prefix)


def to_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML, for ``--dry-run`` and ``runs show``."""
    import yaml

    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=False)
