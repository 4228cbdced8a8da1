"""Each dataset reader on a tiny fabricated copy in its real on-disk format (no network)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from sslbench.data import discovery, load_dataset, locate
from sslbench.errors import UserError


def test_mnist_reads_idx_like_fashion_mnist(isolated_search: Path, make_idx_dataset) -> None:
    make_idx_dataset(isolated_search / "root" / "mnist", fill=5)
    data = load_dataset("mnist", isolated_search / "root", download=False)
    assert data.train_images.shape == (6, 1, 28, 28) and data.train_images.dtype == torch.uint8
    assert int(data.train_images.max()) == 5 and data.info.mean == pytest.approx((0.1307,))


@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_pickles_load_as_uint8_chw(
    isolated_search: Path, make_cifar, name: str, classes: int
) -> None:
    root = isolated_search / "root"
    make_cifar(root / name, name)
    data = load_dataset(name, root, download=False)
    n_train = 20 if name == "cifar10" else 4  # 5 batches of 4, or one train file
    assert data.train_images.shape == (n_train, 3, 32, 32)
    assert data.test_images.shape == (4, 3, 32, 32)
    assert data.train_images.dtype == torch.uint8 and data.train_images.is_contiguous()
    # pixel = index * 3 + channel: each channel plane read from its own 1024-byte block
    assert data.train_images[1, :, 5, 7].tolist() == [3, 4, 5]
    assert data.train_labels.tolist() == [i % classes for i in range(n_train)]
    assert data.test_labels.dtype == torch.int64
    assert (data.info.channels, data.info.image_size, data.info.num_classes) == (3, 32, classes)
    assert data.pretrain_images is data.train_images


def test_cifar_gzip_batches_are_read_too(isolated_search: Path, make_cifar) -> None:
    folder = make_cifar(isolated_search / "cifar10") / "cifar-10-batches-py"
    for path in list(folder.iterdir()):
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    assert load_dataset("cifar10", isolated_search, download=False).train_images.shape[0] == 20


def test_cifar_pickle_that_would_run_code_is_refused(isolated_search: Path, make_cifar) -> None:
    folder = make_cifar(isolated_search / "cifar10") / "cifar-10-batches-py"
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": print, b"labels": []}))
    with pytest.raises(
        UserError,
        match=r"corrupt or unreadable CIFAR batch .*test_batch: "
        r"refusing to load builtins.print",
    ):
        load_dataset("cifar10", isolated_search, download=False)


def test_cifar_wrong_shape_is_user_error(isolated_search: Path, make_cifar) -> None:
    folder = make_cifar(isolated_search / "cifar10") / "cifar-10-batches-py"
    bad = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    (folder / "data_batch_3").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(UserError, match=r"data_batch_3: data of shape \[2, 100\] uint8"):
        load_dataset("cifar10", isolated_search, download=False)


def test_stl10_unlabeled_split_is_the_pretraining_set(isolated_search: Path, make_stl10) -> None:
    arrays = make_stl10(isolated_search / "stl10")
    data = load_dataset("stl10", isolated_search, download=False)
    # stored column by column on disk: read back exactly as the row-major arrays written
    assert torch.equal(data.train_images, torch.from_numpy(arrays["train_X"]))
    assert torch.equal(data.test_images, torch.from_numpy(arrays["test_X"]))
    assert torch.equal(data.pretrain_images, torch.from_numpy(arrays["unlabeled_X"]))
    assert data.pretrain_images.is_contiguous()
    assert data.train_labels.tolist() == [0, 1, 2] and data.test_labels.tolist() == [0, 1]
    assert data.info.shape == (3, 96, 96)
    moved = data.to("cpu")
    assert moved.unlabeled_images is not None and moved.pretrain_images.shape[0] == 5


def test_stl10_reads_in_chunks(
    isolated_search: Path, make_stl10, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sslbench.data import stl10

    monkeypatch.setattr(stl10, "_CHUNK", 2)  # 5 unlabeled images: chunks of 2, 2, 1
    arrays = make_stl10(isolated_search / "stl10")
    data = load_dataset("stl10", isolated_search, download=False)
    assert torch.equal(data.pretrain_images, torch.from_numpy(arrays["unlabeled_X"]))


def test_stl10_gzip_files(isolated_search: Path, make_stl10) -> None:
    arrays = make_stl10(isolated_search / "stl10")
    for path in list((isolated_search / "stl10" / "stl10_binary").iterdir()):
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    data = load_dataset("stl10", isolated_search, download=False)
    assert torch.equal(data.pretrain_images, torch.from_numpy(arrays["unlabeled_X"]))
    assert data.test_labels.tolist() == [0, 1]


def test_stl10_truncated_or_mismatched_files(isolated_search: Path, make_stl10) -> None:
    make_stl10(isolated_search / "stl10")
    binary = isolated_search / "stl10" / "stl10_binary"
    (binary / "test_y.bin").write_bytes(bytes([1, 2, 3]))
    with pytest.raises(UserError, match=r"test_y.bin: 3 labels for 2 images"):
        load_dataset("stl10", isolated_search, download=False)
    (binary / "train_X.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(UserError, match=r"train_X.bin: 1000 bytes is not a whole number"):
        load_dataset("stl10", isolated_search, download=False)


def test_image_folder_with_class_list(isolated_search: Path, make_image_folder) -> None:
    colours = {"n01": (255, 0, 0), "n02": (0, 255, 0), "n03": (0, 0, 255)}
    root = make_image_folder(isolated_search / "imagenet", colours)
    class_list = isolated_search / "classes.txt"
    class_list.write_text("# my subset\nn03\n\nn01  # red\n")
    data = load_dataset("imagefolder", root, download=False, class_list=class_list, image_size=16)
    assert data.train_images.shape == (4, 3, 16, 16) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (4, 3, 16, 16)
    assert data.train_labels.tolist() == [0, 0, 1, 1]  # the order of the list: n03, then n01
    pixel = data.train_images[:, :, 8, 8].tolist()
    assert pixel[0][2] > 240 and pixel[0][0] < 15  # n03 is blue (JPEG: nearly exact)
    assert pixel[2][0] > 240 and pixel[2][2] < 15  # n01 is red
    assert (data.info.num_classes, data.info.image_size) == (2, 16)
    assert data.source == str(root)


def test_image_folder_without_list_takes_every_class(
    isolated_search: Path, make_image_folder
) -> None:
    root = make_image_folder(
        isolated_search / "data" / "imagefolder",
        {"b": (9, 9, 9), "a": (200, 200, 200)},
        per_class=1,
    )
    data = load_dataset("imagefolder", isolated_search / "data", download=False)
    assert data.info.num_classes == 2 and data.info.image_size == 96  # the default size
    assert data.train_images.shape == (2, 3, 96, 96)
    assert data.train_images[0].float().mean() > 150  # "a" sorts first: the light one
    assert locate("imagefolder", isolated_search / "data").folder == root


@pytest.mark.parametrize(
    "content, message",
    [
        (None, r"cannot read class list '.*classes.txt'"),
        ("# nothing\n\n", r"names no class"),
        ("n01\nn02\nn01\n", r"names n01 more than once"),
        ("n01\nn09\n", r"1 class\(es\) not in .*train: n09; fix the list or the data folder"),
    ],
)
def test_bad_class_list_is_one_line_user_error(
    isolated_search: Path, make_image_folder, content: str | None, message: str
) -> None:
    root = make_image_folder(
        isolated_search / "imagenet", {"n01": (1, 2, 3), "n02": (4, 5, 6)}, per_class=1
    )
    class_list = isolated_search / "classes.txt"
    if content is not None:
        class_list.write_text(content)
    with pytest.raises(UserError, match=message) as info:
        load_dataset("imagefolder", root, download=False, class_list=class_list)
    assert "\n" not in str(info.value)


def test_image_folder_bad_images(isolated_search: Path, make_image_folder) -> None:
    root = make_image_folder(isolated_search / "imagenet", {"n01": (1, 2, 3)}, per_class=1)
    (root / "val" / "n01" / "img0.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"cannot decode image .*img0.png"):
        load_dataset("imagefolder", root, download=False)
    (root / "val" / "n01" / "img0.png").unlink()
    with pytest.raises(UserError, match=r"val/n01 holds no images"):
        load_dataset("imagefolder", root, download=False)


def test_class_list_only_for_image_folder(isolated_search: Path, make_cifar) -> None:
    make_cifar(isolated_search / "cifar10")
    with pytest.raises(UserError, match="apply to imagefolder only"):
        load_dataset("cifar10", isolated_search, download=False, image_size=64)


def test_missing_dataset_names_its_layout(isolated_search: Path) -> None:
    with pytest.raises(UserError) as info:
        load_dataset("stl10", isolated_search / "nowhere", download=False)
    assert "holding stl10/stl10_binary/*.bin" in str(info.value)
    assert "let sslbench download it" in str(info.value)
    with pytest.raises(UserError, match="holding imagefolder/train/<class>/"):
        load_dataset("imagefolder", isolated_search / "nowhere")  # never downloaded


def test_cifar_download_lands_in_user_cache(
    isolated_search: Path, make_cifar, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    class FakeCIFAR10:  # extracts where torchvision's CIFAR10 does: ROOT/cifar-10-batches-py
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((train, download))
            make_cifar(Path(root), "cifar10")
            (Path(root) / "cifar-10-python.tar.gz").write_bytes(b"archive")

    monkeypatch.setattr(discovery, "_torchvision_class", lambda name: FakeCIFAR10)
    data = load_dataset("cifar10")
    cache = discovery.cache_root() / "cifar10"
    assert calls == [(True, True)] and data.source == str(cache)
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-batches-py"]  # no archive
    assert locate("cifar10").folder == cache
