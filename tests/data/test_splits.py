"""The validation split: stratified, fixed by (dataset, seed), disjoint from what it is scored
against, and a view of the data in which the test split does not appear."""

from __future__ import annotations

import torch

from sslbench.config import parse_label_spec
from sslbench.data import load_dataset
from sslbench.data.splits import validation_split, validation_view
from sslbench.eval.subsets import label_subset


def test_stratified_disjoint_and_fixed_by_dataset_and_seed() -> None:
    labels = torch.arange(1000) % 10
    labels[:95] = 0  # uneven classes: 185 images of class 0, 90 or 91 of the others
    split = validation_split(labels, 10, 0.1, "toy", 0)
    counts = torch.bincount(labels, minlength=10)
    held = torch.bincount(labels[split.val], minlength=10)
    assert held.tolist() == [round(0.1 * n) for n in counts.tolist()]
    assert torch.equal(torch.cat([split.fit, split.val]).sort().values, torch.arange(1000))
    assert set(split.fit.tolist()).isdisjoint(split.val.tolist())
    again = validation_split(labels, 10, 0.1, "toy", 0)
    assert torch.equal(again.val, split.val) and again.split_id == split.split_id
    other = validation_split(labels, 10, 0.1, "toy", 1)
    assert not torch.equal(other.val, split.val) and other.split_id != split.split_id
    assert split.split_id.startswith(f"toy-v0-{split.val.shape[0]}-")


def test_small_classes_keep_an_image_on_each_side() -> None:
    labels = torch.tensor([0, 0, 1, 1, 1, 2])  # 10 % of 2 or 3 rounds to 0; class 2 has one
    split = validation_split(labels, 3, 0.1, "toy", 0)
    assert torch.bincount(labels[split.val], minlength=3).tolist() == [1, 1, 0]
    assert torch.bincount(labels[split.fit], minlength=3).tolist() == [1, 2, 1]


def test_the_view_of_a_choice_holds_no_test_image() -> None:
    data = load_dataset("synthetic", None, seed=0)
    split = validation_split(data.train_labels, 10, 0.1, "synthetic", 0)
    view = validation_view(data, split)
    assert torch.equal(view.test_images, data.train_images[split.val])
    assert torch.equal(view.test_labels, data.train_labels[split.val])
    assert torch.equal(view.train_images, data.train_images[split.fit])
    assert view.unlabeled_images is None and view.train_images.shape[0] == 924


def test_label_subsets_are_drawn_as_before() -> None:
    """The subsets now share the per-class shuffle with the validation split: same ids."""
    data = load_dataset("synthetic", None, seed=0)
    subset = label_subset(data.train_labels, 10, parse_label_spec("10%"), "synthetic", 0)
    assert subset.subset_id == "synthetic-s0-10pc-909000e5"
