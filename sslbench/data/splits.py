"""Fixed, class-stratified splits of a dataset's training labels.

The **validation split** is the part of the train split that every choice is scored on: a sweep's
objective and pruning, the per-epoch kNN monitor, the collapse check that can stop a run. It is
a share ``data.val_fraction`` of every class (stratified), drawn once from (dataset,
``data.val_seed``) alone, so that every method, seed and trial of a benchmark is chosen on the
same images; its id (``fashion-mnist-v0-6000-1f2e3d4c``: dataset, seed, size, content hash) is
stored in the config of every evaluation run. The classifiers that score a choice are fit on the
rest of the train split (:func:`validation_view`); the test split is not in that view at all.

:func:`class_shuffles` is the per-class random order the validation split and the label subsets of
semi-supervised evaluation (:mod:`sslbench.eval.subsets`) both take their images from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sslbench.errors import UserError

if TYPE_CHECKING:
    import torch

    from sslbench.config import DataConfig
    from sslbench.data import ImageDataset


def class_shuffles(labels: torch.Tensor, num_classes: int, key: str) -> list[torch.Tensor]:
    """Each class's indices into ``labels`` in a random order fixed by ``key`` alone (one draw
    per class, whatever share of it a caller then takes)."""
    import torch

    digest = hashlib.sha256(key.encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    shuffled = []
    for c in range(num_classes):
        members = (labels == c).nonzero().flatten()
        shuffled.append(members[torch.randperm(members.shape[0], generator=gen)])
    return shuffled


def content_hash(indices: torch.Tensor) -> str:
    """Eight hex digits naming a set of (sorted) indices."""
    return hashlib.sha256(indices.numpy().tobytes()).hexdigest()[:8]


@dataclass(frozen=True)
class ValidationSplit:
    """The train split cut in two: ``fit`` (what a choosing classifier trains on) and ``val``
    (what it is scored on), both sorted indices into the train split."""

    fit: torch.Tensor
    val: torch.Tensor
    split_id: str


def validation_split(labels: torch.Tensor, num_classes: int, fraction: float, dataset: str,
                     seed: int) -> ValidationSplit:
    """``round(fraction · n_c)`` images of every class c of the training ``labels`` held out (at
    least one, and never a class's last image: a class of one image stays out of the split)."""
    import torch

    fit, val = [], []
    for members in class_shuffles(labels, num_classes, f"{dataset}:val:{seed}"):
        n = members.shape[0]
        held = min(n - 1, max(1, round(fraction * n))) if n > 1 else 0
        val.append(members[:held])
        fit.append(members[held:])
    held_out = torch.cat(val).sort().values
    if held_out.shape[0] == 0:
        raise UserError(f"{dataset} has no class with two training images: there is nothing to "
                        "hold out as a validation split")
    split_id = f"{dataset}-v{seed}-{held_out.shape[0]}-{content_hash(held_out)}"
    return ValidationSplit(fit=torch.cat(fit).sort().values, val=held_out, split_id=split_id)


def run_validation_split(dataset: ImageDataset, data: DataConfig) -> ValidationSplit:
    """The validation split a run's ``data.*`` section names, on ``dataset``'s train labels."""
    return validation_split(dataset.train_labels.cpu(), dataset.info.num_classes,
                            data.val_fraction, dataset.info.name, data.val_seed)


def validation_view(dataset: ImageDataset, split: ValidationSplit) -> ImageDataset:
    """The dataset as a choice sees it: the fit part as its train split, the validation part as
    its test split. The real test split is not in it, so nothing scored on this view can read the
    test labels."""
    images, labels = dataset.train_images, dataset.train_labels
    fit, val = split.fit.to(labels.device), split.val.to(labels.device)
    return replace(dataset, train_images=images[fit], train_labels=labels[fit],
                   test_images=images[val], test_labels=labels[val], unlabeled_images=None)
