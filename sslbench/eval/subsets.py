"""Fixed, class-balanced, nested subsets of the training labels for semi-supervised evaluation.

As in the SimCLR/BYOL 1 % and 10 % ImageNet protocols, the subset is fixed, not redrawn per
method, so rows of a results table are comparable. Here it is a function of (dataset, label spec,
split seed) only: every class's training indices are shuffled once by a generator seeded from the
dataset name and the split seed, and a subset takes the first ``n`` of each class. A smaller
subset is therefore a prefix of a larger one (1 % ⊂ 5 % ⊂ 10 %). Parsing the spec does not import
torch, so the CLI can reject bad input first.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sslbench.errors import UserError

if TYPE_CHECKING:
    import torch

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


@dataclass(frozen=True)
class LabelSubset:
    """The chosen training indices (sorted) and the id that names them."""

    indices: torch.Tensor
    subset_id: str
    per_class: int
    spec: str


def label_subset(labels: torch.Tensor, num_classes: int, spec: LabelSpec, dataset: str,
                 split_seed: int) -> LabelSubset:
    """The class-balanced subset of ``labels`` (the training labels) named by ``spec``."""
    import torch

    n = spec.count_per_class(labels.shape[0], num_classes)
    counts = torch.bincount(labels, minlength=num_classes)
    smallest = int(counts.min())
    if n > smallest:
        raise UserError(f"--labels {spec}: {n} images per class requested but the smallest class "
                        f"of {dataset} has {smallest} training images")
    digest = hashlib.sha256(f"{dataset}:{split_seed}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    chosen = []
    for c in range(num_classes):
        members = (labels == c).nonzero().flatten()
        order = torch.randperm(members.shape[0], generator=gen)  # one draw per class, any n
        chosen.append(members[order[:n]])
    indices = torch.cat(chosen).sort().values
    content = hashlib.sha256(indices.numpy().tobytes()).hexdigest()[:8]
    subset_id = f"{dataset}-s{split_seed}-{n}pc-{content}"
    return LabelSubset(indices=indices, subset_id=subset_id, per_class=n, spec=str(spec))
