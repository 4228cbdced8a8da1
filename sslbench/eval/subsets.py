"""Fixed, class-balanced, nested subsets of the training labels for semi-supervised evaluation.

As in the SimCLR/BYOL 1 % and 10 % ImageNet protocols, the subset is fixed, not redrawn per
method, so rows of a results table are comparable. Here it is a function of (dataset, label spec,
split seed) only: every class's training indices are shuffled once by a generator seeded from the
dataset name and the split seed, and a subset takes the first ``n`` of each class. A smaller
subset is therefore a prefix of a larger one (1 % ⊂ 5 % ⊂ 10 %). The spec is parsed by
:mod:`sslbench.config.labels`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sslbench.config.labels import LabelSpec
from sslbench.data.splits import class_shuffles, content_hash
from sslbench.errors import UserError

if TYPE_CHECKING:
    import torch

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
    shuffled = class_shuffles(labels, num_classes, f"{dataset}:{split_seed}")
    indices = torch.cat([members[:n] for members in shuffled]).sort().values
    subset_id = f"{dataset}-s{split_seed}-{n}pc-{content_hash(indices)}"
    return LabelSubset(indices=indices, subset_id=subset_id, per_class=n, spec=str(spec))
