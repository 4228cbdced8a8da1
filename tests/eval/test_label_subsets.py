"""Label subsets: class-balanced, deterministic, nested; label specs parsed or rejected."""

from __future__ import annotations

import itertools

import pytest
import torch

from sslbench.config import LabelSpec, parse_label_spec, parse_semi_spec
from sslbench.errors import UserError
from sslbench.eval.subsets import label_subset


def _labels(n_per_class: int = 1000, num_classes: int = 10, seed: int = 0) -> torch.Tensor:
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    return labels[torch.randperm(labels.shape[0], generator=torch.Generator().manual_seed(seed))]


@pytest.mark.parametrize(("text", "spec"), [
    ("1%", LabelSpec(fraction=0.01)), ("10 %", LabelSpec(fraction=0.1)),
    ("0.5%", LabelSpec(fraction=0.005)), ("100%", LabelSpec(fraction=1.0)),
    ("0.05", LabelSpec(fraction=0.05)), ("10/class", LabelSpec(per_class=10)),
    ("1 / class", LabelSpec(per_class=1)),
])
def test_label_specs(text: str, spec: LabelSpec) -> None:
    assert parse_label_spec(text) == spec


@pytest.mark.parametrize("text", ["0%", "150%", "-1%", "1", "1.5", "0/class", "ten", "", "1%%"])
def test_bad_label_specs_are_user_errors(text: str) -> None:
    with pytest.raises(UserError, match="--labels"):
        parse_label_spec(text)


def test_semi_spec_reads_a_bare_number_as_a_percentage() -> None:
    assert parse_semi_spec("1") == LabelSpec(fraction=0.01)
    assert parse_semi_spec("10/class") == LabelSpec(per_class=10)


def test_subsets_are_class_balanced_with_the_expected_size() -> None:
    labels = _labels()
    for text, per_class in (("1%", 10), ("5%", 50), ("10%", 100), ("7/class", 7)):
        subset = label_subset(labels, 10, parse_label_spec(text), "fake", split_seed=0)
        counts = torch.bincount(labels[subset.indices], minlength=10)
        assert counts.tolist() == [per_class] * 10
        assert subset.per_class == per_class
        assert subset.indices.unique().shape == subset.indices.shape


def test_subsets_are_deterministic_and_depend_on_dataset_and_seed() -> None:
    labels = _labels()
    spec = parse_label_spec("1%")
    a = label_subset(labels, 10, spec, "fake", split_seed=0)
    b = label_subset(labels.clone(), 10, spec, "fake", split_seed=0)
    assert torch.equal(a.indices, b.indices) and a.subset_id == b.subset_id
    other_seed = label_subset(labels, 10, spec, "fake", split_seed=1)
    other_data = label_subset(labels, 10, spec, "other", split_seed=0)
    assert not torch.equal(a.indices, other_seed.indices) and a.subset_id != other_seed.subset_id
    assert not torch.equal(a.indices, other_data.indices)


def test_subsets_are_nested_for_one_seed() -> None:
    labels = _labels()
    sets = [set(label_subset(labels, 10, parse_label_spec(t), "fake", 3).indices.tolist())
            for t in ("1%", "5%", "10%", "50%")]
    assert all(small < large for small, large in itertools.pairwise(sets))


def test_the_global_torch_seed_does_not_matter() -> None:
    labels = _labels()
    torch.manual_seed(1)
    a = label_subset(labels, 10, parse_label_spec("1%"), "fake", 0)
    torch.manual_seed(2)
    b = label_subset(labels, 10, parse_label_spec("1%"), "fake", 0)
    assert torch.equal(a.indices, b.indices)


def test_more_per_class_than_the_smallest_class_is_a_user_error() -> None:
    with pytest.raises(UserError, match="smallest class"):
        label_subset(_labels(n_per_class=5), 10, parse_label_spec("6/class"), "fake", 0)
