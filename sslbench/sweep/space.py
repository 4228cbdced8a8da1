"""Search spaces: YAML files parsed and checked into :class:`SearchSpace`.

The spaces shipped with sslbench are the repository's top-level ``sweeps/METHOD.yaml`` (installed
as ``sslbench/sweeps/`` in a wheel, :func:`space_for`); a method without one gets
:func:`default_space`. ``--space FILE.yaml`` uses any other.

A space file names the method, the objective and the parameters to search::

    method: byol
    objective: knn            # knn (weighted kNN top-1) or linear (linear-probe top-1)
    trials: 12
    fixed:                    # config keys every trial shares (the budget: epochs, dataset...)
      train.epochs: 2
    pruner: {name: median, startup_trials: 3, warmup_epochs: 1}   # or hyperband, or none
    params:
      method.ema_decay: {type: float, low: 0.9, high: 0.999}
      optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      train.batch_size: {type: categorical, choices: [128, 256, 512]}
      method.queue_size: {type: int, low: 1024, high: 8192, step: 1024,
                          when: {method.use_queue: true}}   # conditional parameter
    baseline: true            # trial 0 = the method's defaults (default true)
    recipe: fashion-mnist-15m # optional: every trial starts from this shipped recipe

Every parameter is a dotted config key of the method; its values are validated by building a
trial config (so a space cannot propose a value the config would reject). No torch, no optuna
import here: a malformed file is reported before anything heavy is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslbench.config.parse import read_yaml
from sslbench.errors import ConfigError

OBJECTIVES = ("knn", "linear")
PRUNERS = ("median", "hyperband", "none")
_PARAM_KEYS = {"type", "low", "high", "log", "step", "choices", "when"}


@dataclass(frozen=True)
class Param:
    """One searched config key."""

    key: str
    type: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: dict[str, Any] = field(default_factory=dict)  # only searched if these keys match


@dataclass(frozen=True)
class PrunerSpec:
    name: str = "median"
    startup_trials: int = 3
    warmup_epochs: int = 1


@dataclass(frozen=True)
class SearchSpace:
    method: str
    objective: str = "knn"
    trials: int = 12
    params: tuple[Param, ...] = ()
    fixed: dict[str, Any] = field(default_factory=dict)
    pruner: PrunerSpec = PrunerSpec()
    seed: int = 0
    source: str = "<inline>"
    baseline: bool = True  # trial 0 runs the method's defaults, the point the search must beat
    recipe: str | None = None  # a shipped recipe every trial starts from (sslbench.config.recipes)

    def with_fixed(self, values: dict[str, Any]) -> SearchSpace:
        """``--set key=value``: fix these keys (and stop searching them)."""
        import dataclasses

        params = tuple(p for p in self.params if p.key not in values)
        return dataclasses.replace(self, params=params, fixed={**self.fixed, **values})


def shipped_spaces_dir() -> Path:
    """The folder of the shipped spaces: ``sslbench/sweeps`` in an installed wheel, the
    repository's ``sweeps/`` in a source checkout (an editable install)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "sweeps"
    return installed if installed.is_dir() else package.parent / "sweeps"


def space_for(method: str) -> SearchSpace:
    """The space shipped for ``method``, or :func:`default_space` if it has none."""
    path = shipped_spaces_dir() / f"{method}.yaml"
    return load_space(path) if path.is_file() else default_space(method)


# The space of a method without a file of its own: what every method has (its learning rate, its
# weight decay, its batch size) over ranges that hold the global defaults, at the same CPU budget
# as the shipped spaces. Documented in docs/sweeps.md; a file in sweeps/ replaces it.
DEFAULT_SPACE: dict[str, Any] = {
    "objective": "knn",
    "trials": 12,
    "fixed": {"train.epochs": 2},
    "pruner": {"name": "median", "startup_trials": 3, "warmup_epochs": 1},
    "params": {
        "optimizer.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
        "optimizer.weight_decay": {"type": "float", "low": 1.0e-6, "high": 1.0e-3, "log": True},
        "train.batch_size": {"type": "categorical", "choices": [128, 256, 512]},
    },
}


def default_space(method: str) -> SearchSpace:
    """:data:`DEFAULT_SPACE` for ``method``."""
    return parse_space({"method": method, **DEFAULT_SPACE}, source=f"default space of {method}")


def load_space(path: str | Path) -> SearchSpace:
    """Parse and check a space file; any problem is a one-line :class:`ConfigError`."""
    raw = read_yaml(path, "search space", f"; pass --space FILE.yaml (examples in "
                                          f"{shipped_spaces_dir()})")
    return parse_space(raw, source=Path(path).name)


def parse_space(raw: Any, source: str = "<inline>") -> SearchSpace:
    def bad(msg: str) -> ConfigError:
        return ConfigError(f"search space {source}: {msg}")

    if not isinstance(raw, dict):
        raise bad("must be a mapping with method, objective, params")
    allowed = ("method", "objective", "trials", "params", "fixed", "pruner", "seed", "baseline",
               "recipe")
    unknown = set(raw) - set(allowed)
    if unknown:
        raise bad(f"unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(allowed)}")
    baseline = raw.get("baseline", True)
    if not isinstance(baseline, bool):
        raise bad(f"baseline must be true or false, not {baseline!r}")
    recipe = raw.get("recipe")
    if recipe is not None and not isinstance(recipe, str):
        raise bad(f"recipe must name a shipped recipe (`sslbench recipes`), not {recipe!r}")
    method = raw.get("method")
    if not isinstance(method, str):
        raise bad("'method' must name a method, e.g. method: byol")
    objective = raw.get("objective", "knn")
    if objective not in OBJECTIVES:
        raise bad(f"objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
    trials = raw.get("trials", 12)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise bad(f"trials must be a positive integer, not {trials!r}")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise bad(f"seed must be an integer, not {seed!r}")
    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise bad("'fixed' must map dotted config keys to values")
    params_raw = raw.get("params") or {}
    if not isinstance(params_raw, dict) or not params_raw:
        raise bad("'params' must map at least one dotted config key to a distribution")
    params = tuple(_param(str(k), v, bad) for k, v in params_raw.items())
    for p in params:
        if p.key in fixed:
            raise bad(f"{p.key} is both fixed and searched")
        for cond in p.when:
            if cond not in fixed and cond not in {q.key for q in params}:
                raise bad(f"{p.key}: condition on {cond!r}, which is neither fixed nor searched")
    return SearchSpace(method, objective, trials, params, dict(fixed), _pruner(raw, bad),
                       seed, source, baseline, recipe)


def _param(key: str, spec: Any, bad: Any) -> Param:
    if not isinstance(spec, dict):
        raise bad(f"{key}: expected a mapping like {{type: float, low: 0.1, high: 1.0}}")
    unknown = set(spec) - _PARAM_KEYS
    if unknown:
        raise bad(f"{key}: unknown field(s) {', '.join(sorted(unknown))}; allowed: "
                  f"{', '.join(sorted(_PARAM_KEYS))}")
    kind = spec.get("type")
    when = spec.get("when") or {}
    if not isinstance(when, dict):
        raise bad(f"{key}: 'when' must map config keys to the values that enable it")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise bad(f"{key}: categorical needs a non-empty list of choices")
        return Param(key, kind, choices=tuple(choices), when=dict(when))
    if kind not in ("float", "int"):
        raise bad(f"{key}: type must be float, int or categorical, not {kind!r}")
    low, high = spec.get("low"), spec.get("high")
    for name, value in (("low", low), ("high", high)):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise bad(f"{key}: '{name}' must be a number, not {value!r}")
    if low >= high:
        raise bad(f"{key}: low ({low}) must be below high ({high})")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise bad(f"{key}: a log-uniform range needs low > 0")
    step = spec.get("step")
    if step is not None and (not isinstance(step, int | float) or step <= 0):
        raise bad(f"{key}: step must be a positive number")
    if log and step is not None:
        raise bad(f"{key}: log and step cannot be combined")
    if kind == "int" and not all(float(v).is_integer() for v in (low, high)):
        raise bad(f"{key}: an int range needs integer low and high")
    return Param(key, kind, float(low), float(high), log, step, when=dict(when))


def _pruner(raw: dict[str, Any], bad: Any) -> PrunerSpec:
    spec = raw.get("pruner", {"name": "median"})
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or spec.get("name", "median") not in PRUNERS:
        raise bad(f"pruner must be one of {', '.join(PRUNERS)} (or a mapping with name)")
    unknown = set(spec) - {"name", "startup_trials", "warmup_epochs"}
    if unknown:
        raise bad(f"pruner: unknown field(s) {', '.join(sorted(unknown))}")
    values = {k: spec[k] for k in ("startup_trials", "warmup_epochs") if k in spec}
    for k, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise bad(f"pruner.{k} must be a non-negative integer")
    return PrunerSpec(spec.get("name", "median"), **values)


def active(param: Param, values: dict[str, Any]) -> bool:
    """Is ``param`` searched, given the values chosen (or fixed) so far?"""
    return all(values.get(k) == v for k, v in param.when.items())
