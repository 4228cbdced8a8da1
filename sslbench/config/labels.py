"""Label specs: how many labels a semi-supervised evaluation (or the supervised baseline) uses.

``1%``, ``10%``, ``0.05`` (a fraction) or ``10/class``; parsing is torch-free so the CLI rejects
bad input before anything heavy is loaded. The subsets themselves are drawn by
:func:`sslbench.eval.subsets.label_subset`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sslbench.errors import UserError

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")
_PER_CLASS = re.compile(r"^\s*(\d+)\s*/\s*class\s*$")
_FRACTION = re.compile(r"^\s*(\d*\.\d+|\d+\.)\s*$")  # a decimal point: 0.01, not 1


@dataclass(frozen=True)
class LabelSpec:
    """How many labels: a ``fraction`` of the training set, or ``per_class`` images per class."""

    fraction: float | None = None
    per_class: int | None = None

    def __str__(self) -> str:
        if self.per_class is not None:
            return f"{self.per_class}/class"
        return f"{100 * (self.fraction or 0):g}%"

    def count_per_class(self, num_train: int, num_classes: int) -> int:
        """Images taken from each class (a fraction f of N gives round(f·N / C) per class)."""
        if self.per_class is not None:
            return self.per_class
        assert self.fraction is not None
        return max(1, round(self.fraction * num_train / num_classes))


def parse_label_spec(text: str) -> LabelSpec:
    """``"1%"``, ``"10%"``, ``"0.05"`` (a fraction) or ``"10/class"``; a UserError otherwise."""
    if m := _PER_CLASS.match(text):
        n = int(m.group(1))
        if n < 1:
            raise UserError(f"--labels {text!r}: need at least 1 image per class")
        return LabelSpec(per_class=n)
    if m := _PERCENT.match(text):
        fraction = float(m.group(1)) / 100
    elif m := _FRACTION.match(text):
        fraction = float(m.group(1))
    else:
        raise UserError(f"--labels {text!r} is not a percentage (1%), a fraction (0.01) or a "
                        "count per class (10/class)")
    if not 0 < fraction <= 1:
        raise UserError(f"--labels {text!r} is out of range: the fraction of labels must be in "
                        "(0 %, 100 %]")
    return LabelSpec(fraction=fraction)


def parse_semi_spec(text: str) -> LabelSpec:
    """The SPEC of ``--eval semi:SPEC``: as ``--labels``, and a bare number is a percentage."""
    bare_number = re.fullmatch(r"\s*\d+\s*", text) is not None
    return parse_label_spec(f"{text.strip()}%" if bare_number else text)
