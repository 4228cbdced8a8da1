"""Parsing and validation of run configs: dotted ``key=value`` overrides, YAML files, coercion of
every value to its field's type, range and cross-field checks.

Any problem is a :class:`~sslbench.errors.ConfigError` with a one-line message; inner code trusts
a config built here. Torch-free; which method and dataset defaults apply is decided above, in
:mod:`sslbench.resolve`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

from sslbench.config.budget import BUDGET_KEYS
from sslbench.config.labels import parse_semi_spec
from sslbench.config.schema import (
    EVAL_PROTOCOLS,
    KDE_BANDWIDTH_RULES,
    LAYER_HELP,
    LAYER_PATTERN,
    RECIPE_KEY,
    AugmentConfig,
    RunConfig,
)
from sslbench.errors import ConfigError, UserError
from sslbench.limits import MAX_ID


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


def apply_dotted(config: dict[str, Any], dotted: dict[str, Any]) -> dict[str, Any]:
    """A copy of the nested ``config`` with ``dotted`` keys set (validate it by building it)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
    for key, value in dotted.items():
        *path, last = key.split(".")
        node = out
        for part in path:
            node[part] = dict(node.get(part) or {})
            node = node[part]
        node[last] = value
    return out


def read_yaml(path: str | Path, what: str, hint: str = "") -> Any:
    """The data of a YAML file (``yaml.safe_load``: no tags that build objects); a missing,
    unreadable, non-UTF-8 or malformed file is a one-line ConfigError naming ``what`` it is."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {str(p)!r} does not exist{hint}")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {str(p)!r} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{what} {str(p)!r} cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{what} {str(p)!r} is not valid YAML{where}") from None
    except RecursionError:
        raise ConfigError(f"{what} {str(p)!r} is nested too deeply") from None


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    """Read a config file (YAML mapping, nested or dotted keys). A recipe's ``recipe:`` block is
    metadata (:mod:`sslbench.config.recipes`) and is left out."""
    data = read_yaml(path, "config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys to values")
    data.pop(RECIPE_KEY, None)
    return flatten(data)


def build_config(method_cls: type, values: dict[str, Any]) -> RunConfig:
    """Apply dotted ``values`` onto the defaults, coercing and validating every key."""
    cfg = RunConfig(method=method_cls())
    for key, raw in values.items():
        _set_key(cfg, key, raw)
    validate(cfg)
    cross_checks(cfg)
    return cfg


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
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        try:
            value = raw if isinstance(raw, int) else int(str(raw))
        except ValueError:
            raise bad from None
        if not -MAX_ID <= value <= MAX_ID:  # what a 64-bit integer (SQL, torch) holds
            raise ConfigError(f"{key}={raw!r} is out of range: must be within ±(2^63 − 1)")
        return value
    if tp is float:
        if isinstance(raw, bool):
            raise bad
        try:
            value = float(raw)
        except (TypeError, ValueError, OverflowError):
            raise bad from None
        if not math.isfinite(value):
            raise ConfigError(f"{key}={raw!r} must be a finite number")
        return value
    if tp is str:
        if isinstance(raw, dict | list):
            raise bad
        return str(raw)
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # a programming error, shown plainly


def validate(node: Any, prefix: str = "") -> None:
    """Range-check every key of ``node`` (a config section) against its field's bounds."""
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            validate(value, f"{key}.")
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
    if aug.small_crop_min_scale > aug.small_crop_max_scale:
        raise ConfigError(f"augment.small_crop_min_scale={aug.small_crop_min_scale} is larger "
                          f"than augment.small_crop_max_scale={aug.small_crop_max_scale}")


def cross_checks(cfg: RunConfig) -> None:
    """Checks that involve several keys (or a key's syntax beyond its type)."""
    _check_augment_ranges(cfg.augment)
    if cfg.data.image_size is not None and cfg.data.dataset != "imagefolder":
        raise ConfigError(f"data.image_size={cfg.data.image_size} applies to the imagefolder "
                          f"dataset only; {cfg.data.dataset} images keep their own size")
    for protocol in cfg.eval.protocols:
        check_protocol(protocol)
    for key, layer in (("eval.linear.layer", cfg.eval.linear.layer),
                       ("eval.knn.layer", cfg.eval.knn.layer)):
        if not LAYER_PATTERN.match(layer) or layer.startswith("projector:grid"):
            raise ConfigError(f"{key}={layer!r}: unknown layer; choose {LAYER_HELP} (the "
                              "projector's output has no grid)")
    check_bandwidth("eval.diagnostics.kde_bandwidth", cfg.eval.diagnostics.kde_bandwidth)
    budgets = [f"train.{k}" for k in BUDGET_KEYS if getattr(cfg.train, k) is not None]
    if len(budgets) > 1:
        raise ConfigError(f"{' and '.join(budgets)}: a run has one compute budget; keep one "
                          "(--budget, --budget-steps or --budget-flops)")
    validate_method = getattr(cfg.method, "validate", None)
    if validate_method is not None:
        validate_method()


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


def to_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML, for ``--dry-run`` and ``runs show``."""
    import yaml

    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=False)
