"""Compute budgets as a user writes them and as a report shows them (torch-free).

A pretraining run trains for ``train.epochs`` unless one budget replaces them:
``train.budget_s`` (seconds of training, ``--budget 10m``), ``train.budget_steps`` (optimizer
steps) or ``train.budget_flops`` (training FLOPs as counted by PyTorch's ``FlopCounterMode``).
How a budget becomes a number of steps is :mod:`sslbench.train.budget`.
"""

from __future__ import annotations

import math
import re
from typing import Any

from sslbench.errors import UserError

_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([hms])")
BUDGET_KEYS = ("budget_s", "budget_steps", "budget_flops")


def parse_duration(text: str, flag: str = "--budget") -> float:
    """``"10m"``, ``"90s"``, ``"1h30m"``, ``"1.5h"`` or plain seconds (``"600"``) → seconds."""
    spec = text.strip().lower().replace(" ", "")
    try:
        seconds = float(spec)
    except ValueError:
        parts = _PART.findall(spec)
        if not parts or "".join(n + u for n, u in parts) != spec:
            raise UserError(f"{flag} {text!r}: not a duration; write e.g. 90s, 10m, 1h30m or "
                            "600 (seconds)") from None
        seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"{flag} {text!r}: a budget must be a positive duration")
    return seconds


def format_seconds(seconds: float) -> str:
    """A budget as written: ``10m``, ``1h30m``, ``45s``, ``2m30s``; fractions of a second kept
    (``1.5s``)."""
    if seconds != round(seconds):
        return f"{seconds:g}s"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = "".join(f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if v)
    return text or "0s"


def budget_label(train: dict[str, Any]) -> str:
    """What a run's ``train`` config section trains for, as the report shows it: ``10m``,
    ``5000 steps``, ``2e+15 FLOP`` or ``3 epochs``."""
    if train.get("budget_s") is not None:
        return format_seconds(float(train["budget_s"]))
    if train.get("budget_steps") is not None:
        return f"{int(train['budget_steps'])} steps"
    if train.get("budget_flops") is not None:
        return f"{float(train['budget_flops']):.3g} FLOP"
    epochs = train.get("epochs")
    return "-" if epochs is None else f"{epochs} epochs"


def parse_budget_label(text: str, flag: str = "--budget") -> str:
    """A budget as a user filters a report by it (``10m``, ``600s``, ``5000 steps``,
    ``2e15 flop``, ``3 epochs``) → the label :func:`budget_label` gives such runs."""
    spec = text.strip().lower()
    if m := re.fullmatch(r"(\d+)\s*(steps?|epochs?)", spec):
        unit = "steps" if m.group(2).startswith("step") else "epochs"
        return f"{int(m.group(1))} {unit}"
    m = re.fullmatch(r"([0-9.e+]+)\s*flops?", spec)
    try:
        return (f"{float(m.group(1)):.3g} FLOP" if m else
                format_seconds(parse_duration(text, flag)))
    except (ValueError, UserError):
        raise UserError(f"{flag} {text!r}: write a duration (10m, 90s), 'N steps', 'N epochs' "
                        "or 'X flop' (e.g. 2e15 flop)") from None
