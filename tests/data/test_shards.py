"""Prepared shards (sslbench.data.shards, data.prepare, data.stream): written once, read back
exactly, streamed per epoch deterministically, and refused with one line when damaged."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from sslbench.cli import main
from sslbench.config import DataConfig
from sslbench.data import load_dataset, load_prepared
from sslbench.data.prepare import PrepareOptions, prepare
from sslbench.data.shards import ShardedImages, read_manifest, read_split, shard_samples
from sslbench.data.stream import ShardBatches, steps_per_epoch
from sslbench.errors import RunFailure, UserError

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


@pytest.fixture
def folder(tmp_path: Path, make_image_folder: Callable[..., Path]) -> Path:
    return make_image_folder(tmp_path / "images", COLOURS, per_class=4)


@pytest.fixture
def prepared(tmp_path: Path, folder: Path) -> Path:
    prepare(str(folder), tmp_path / "prepared",
            PrepareOptions(size=24, encoding="jpeg", shard_size=5, workers=0), echo=print)
    return tmp_path / "prepared"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic dataset (1024 train images, raw 28 px) in 8 shards of 128."""
    out = tmp_path_factory.mktemp("synthetic") / "prepared"
    prepare("synthetic", out, PrepareOptions(shard_size=128, workers=0), echo=print)
    return out


def test_an_image_folder_is_stored_once_in_a_random_order_with_its_labels(prepared: Path
                                                                           ) -> None:
    m = read_manifest(prepared)
    assert (m.dataset, m.classes, m.size, m.channels, m.encoding) == (
        "imagefolder", ("blue", "green", "red"), 24, 3, "jpeg")
    assert [s.count for s in m.splits["train"].shards] == [5, 5, 2]
    images, labels = read_split(prepared, m, "train")
    assert images.shape == (12, 3, 24, 24) and labels.dtype == torch.int64
    colour = torch.tensor([COLOURS[m.classes[int(y)]] for y in labels], dtype=torch.float)
    assert (images[:, :, 12, 12].float() - colour).abs().max() <= 3  # JPEG, solid colours
    index = np.load(prepared / "train.index.npy")
    assert sorted(index.tolist()) == list(range(12)) and index.tolist() != list(range(12))
    keys = [i for i, _, _ in shard_samples([prepared / s.name for s in m.splits["train"].shards])]
    assert keys == index.tolist()  # every sample keeps its stable index as its key
    # the stable index is the source order: sorted classes, then sorted files
    assert labels.tolist() == [i // 4 for i in index.tolist()]


def test_preparing_twice_writes_the_same_shards(tmp_path: Path, folder: Path,
                                                prepared: Path) -> None:
    prepare(str(folder), tmp_path / "again",
            PrepareOptions(size=24, encoding="jpeg", shard_size=5, workers=0), echo=print)
    assert (tmp_path / "again" / "manifest.json").read_text() \
        .replace(str(tmp_path / "again"), "") == (prepared / "manifest.json").read_text() \
        .replace(str(prepared), "")


def test_a_registered_dataset_is_stored_raw_and_reads_back_bit_exact(synthetic: Path) -> None:
    m = read_manifest(synthetic)
    assert (m.encoding, m.splits["train"].count, m.splits["test"].count) == ("raw", 1024, 512)
    original = load_dataset("synthetic", seed=0)
    images, labels = read_split(synthetic, m, "train")
    index = torch.from_numpy(np.load(synthetic / "train.index.npy"))
    assert torch.equal(images, original.train_images[index])
    assert torch.equal(labels, original.train_labels[index])


def test_sharded_images_index_like_the_tensor_they_stand_for(synthetic: Path) -> None:
    m = read_manifest(synthetic)
    lazy = ShardedImages(synthetic, m, "train")
    full, _ = read_split(synthetic, m, "train")
    assert lazy.shape == tuple(full.shape) and len(lazy) == 1024
    idx = torch.tensor([1000, 3, 3, 600, -1])
    assert torch.equal(lazy[idx], full[idx])
    assert torch.equal(lazy[120:260], full[120:260])


def test_storage_auto_streams_what_does_not_fit_the_budget(synthetic: Path) -> None:
    data = DataConfig(dataset="synthetic", prepared=str(synthetic))
    assert load_prepared(data).shards is None  # 1.2 MB fits 8 GB: in memory
    small = load_prepared(dataclasses.replace(data, memory_budget_gb=0.001))
    assert small.shards is not None and isinstance(small.train_images, ShardedImages)
    assert small.train_labels.shape == (1024,)


def _stream(root: Path, *, workers: int = 0, device_decode: bool = False, batch: int = 32,
            world: int = 1) -> ShardBatches:
    return ShardBatches(load_prepared(DataConfig(dataset="synthetic", prepared=str(root),
                                                 storage="stream")).shards,  # type: ignore[arg-type]
                        local_batch=batch, world=world, device=torch.device("cpu"),
                        shuffle_buffer=100, workers=workers, decode_on_device=device_decode)


def _epoch(stream: ShardBatches, seed: int, first: int = 0) -> torch.Tensor:
    return torch.stack(list(stream.epoch(torch.Generator().manual_seed(seed), first)))


def test_an_epoch_is_every_image_once_in_an_order_given_by_the_seed(synthetic: Path) -> None:
    stream = _stream(synthetic)
    assert stream.steps_per_epoch == 1024 // 32
    one = _epoch(stream, seed=5)
    full, _ = read_split(synthetic, read_manifest(synthetic), "train")
    assert one.shape == (32, 32, 1, 28, 28)
    rows = {bytes(x.numpy()) for x in one.flatten(0, 1)}
    assert rows == {bytes(x.numpy()) for x in full}  # each image once (they are distinct)
    assert torch.equal(one, _epoch(stream, seed=5))
    assert not torch.equal(one, _epoch(stream, seed=6))


def test_resuming_mid_epoch_continues_the_same_stream(synthetic: Path) -> None:
    stream = _stream(synthetic)
    assert torch.equal(_epoch(stream, 3, first=7), _epoch(stream, 3)[7:])


def test_device_decoding_gives_the_images_the_workers_give(prepared: Path) -> None:
    data = DataConfig(dataset="imagefolder", prepared=str(prepared), storage="stream")
    shards = load_prepared(data).shards
    assert shards is not None
    by = {on: ShardBatches(shards, local_batch=4, world=1, device=torch.device("cpu"),
                           shuffle_buffer=10, workers=0, decode_on_device=on)
          for on in (True, False)}
    gen = torch.Generator().manual_seed(0)
    device = torch.stack(list(by[True].epoch(gen)))
    assert torch.equal(device, torch.stack(list(by[False].epoch(gen))))
    assert device.shape == (3, 4, 3, 24, 24)


def test_a_worker_needs_enough_shards(synthetic: Path) -> None:
    m = read_manifest(synthetic)
    assert steps_per_epoch(m, "train", 2, 16) == 4 * 128 // 16
    with pytest.raises(UserError, match="fewer than the 9 workers"):
        steps_per_epoch(m, "train", 9, 1)
    with pytest.raises(UserError, match="smaller --batch-size"):
        steps_per_epoch(m, "train", 8, 200)


def test_a_shard_damaged_in_place_fails_the_stream_and_verify(tmp_path: Path,
                                                              synthetic: Path) -> None:
    import shutil

    copy = shutil.copytree(synthetic, tmp_path / "copy")
    shard = copy / "train-000002.tar"
    shard.write_bytes(b"\0" * 10 + b"x" * (shard.stat().st_size - 10))  # same size: not a tar
    with pytest.raises(RunFailure, match="cannot read the shards"):
        _epoch(_stream(copy), seed=0)
    assert main(["data", "verify", str(copy)]) == 2


# -- bad input: one line, exit 2, nothing written ------------------------------------------------


def _pretrain(root: Path, tmp_path: Path, *extra: str) -> int:
    return main(["pretrain", "simclr", "--db", str(tmp_path / "r.sqlite"), "--quiet",
                 "--gpus", "0", "data.dataset=synthetic", f"data.prepared={root}",
                 "data.storage=stream", f"train.output_dir={tmp_path / 'runs'}", *extra])


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "train-000003.tar").unlink(), "train-000003.tar is missing"),
    (lambda r: (r / "test-000000.tar").write_bytes(b"short"), "has 5 bytes, the manifest says"),
    (lambda r: (r / "manifest.json").write_text(
        (r / "manifest.json").read_text().replace('"size": 28', '"size": 32')),
     "does not match its checksum"),
    (lambda r: (r / "manifest.json").write_text("{"), "is not an sslbench manifest"),
    (lambda r: (r / "manifest.json").unlink(), "has no manifest.json"),
    (lambda r: (r / "train.labels.npy").write_bytes(b"x" * 10), "train.labels.npy is corrupt"),
])
def test_damaged_prepared_data_is_refused_before_anything_is_written(
    tmp_path: Path, synthetic: Path, damage: Callable[[Path], object], message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shutil

    copy = shutil.copytree(synthetic, tmp_path / "copy")
    damage(copy)
    assert _pretrain(copy, tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r.sqlite").exists() and not (tmp_path / "runs").exists()


def test_a_class_list_or_dataset_other_than_the_shards_is_refused(
    tmp_path: Path, prepared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    classes = tmp_path / "classes.txt"
    classes.write_text("red\ngreen\n")
    db = tmp_path / "r.sqlite"
    argv = ["pretrain", "simclr", "--db", str(db), "--quiet", "--gpus", "0",
            f"data.prepared={prepared}", f"train.output_dir={tmp_path / 'runs'}"]
    assert main([*argv, "data.dataset=imagefolder", f"data.class_list={classes}"]) == 2
    assert "does not match the classes" in capsys.readouterr().err
    classes.write_text("green\nblue\nred\n")
    assert main([*argv, "data.dataset=imagefolder", f"data.class_list={classes}"]) == 2
    assert "in another order" in capsys.readouterr().err
    assert main([*argv, "data.dataset=stl10"]) == 2
    assert "set data.dataset=imagefolder" in capsys.readouterr().err
    assert not db.exists() and not (tmp_path / "runs").exists()


def test_prepare_refuses_bad_input_and_leaves_nothing(
    tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    (folder / "train" / "red" / "broken.jpg").write_bytes(b"not a jpeg")
    assert main(["data", "prepare", str(folder), "--out", str(out), "--workers", "0"]) == 2
    assert "cannot decode image" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))
    assert main(["data", "prepare", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    out.mkdir()
    (out / "x").write_text("")
    assert main(["data", "prepare", "synthetic", "--out", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
