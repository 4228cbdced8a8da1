"""``sslbench data prepare``: decode a dataset once into WebDataset shards (see
:mod:`sslbench.data.shards` for the layout).

An image folder is read file by file by a pool of processes (each image decoded, centre-cropped
to a square, resized and encoded again), so that preparing ImageNet holds a few thousand images in
memory, never the dataset. Any other registered dataset is loaded as usual and written out.
Everything goes to a hidden folder beside ``--out`` that is renamed at the end: a failure (a
corrupt source image, a full disk, Ctrl-C) leaves nothing behind.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from sslbench.data import imagefolder
from sslbench.data.registry import get_info
from sslbench.data.shards import (
    EXTENSION,
    ArrayFile,
    Encoding,
    Manifest,
    ShardInfo,
    SplitInfo,
    sha256_file,
    webdataset,
    write_manifest,
)
from sslbench.errors import UserError

RAW_MAX_SIZE = 64  # "auto" stores images up to this side raw (decoding costs more than reading)
_BLOCK = 4096  # images handed to the pool at a time: bounds what is held in memory
_CHUNK = 64  # images per task


@dataclass(frozen=True)
class PrepareOptions:
    size: int | None = None  # None: the dataset's own size (96 for an image folder)
    encoding: str = "auto"  # jpeg, raw, or auto (raw up to RAW_MAX_SIZE px)
    quality: int = 90  # JPEG quality
    shard_size: int = 1000  # images per shard
    seed: int = 0  # of the stored order
    workers: int = os.cpu_count() or 1  # encoding processes (0: in this process)
    data_dir: str | None = None
    class_list: str | None = None


@dataclass
class _Split:
    """A split to write, in source order: its labels, and its images as files (an image folder)
    or as uint8 arrays [C, H, W]."""

    labels: np.ndarray
    images: Sequence[Path] | np.ndarray


def prepare(source: str, out: str | os.PathLike[str], options: PrepareOptions,
            echo: Callable[[str], None] = print) -> Manifest:
    """Write ``source`` (a registered dataset name, or a folder holding ``train/`` and
    ``val/`` class folders) as shards to ``out``; returns the manifest written."""
    target = Path(out).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"--out {str(target)!r} exists and is not empty; choose a new folder")
    webdataset()  # the extra is there before anything is read or written
    dataset, folder, classes, splits, channels, size = _plan(source, options)
    encoding: Encoding = ("raw" if size <= RAW_MAX_SIZE else "jpeg") \
        if options.encoding == "auto" else options.encoding  # type: ignore[assignment]
    encode = partial(_encode_images, size=size, encoding=encoding, quality=options.quality)
    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    try:
        staging.mkdir(parents=True)
    except OSError as exc:
        raise UserError(f"cannot create {str(staging)!r} ({exc.strerror}); choose another "
                        "--out") from None
    try:
        written = {}
        with _pool(options.workers) as pool:
            for name, split in splits.items():
                written[name] = _write_split(staging, name, split, pool, encode,
                                             EXTENSION[encoding], options)
                echo(f"{name}: {written[name].count} images in {len(written[name].shards)} "
                     "shard(s)")
        manifest = Manifest(dataset=dataset, source=str(folder), classes=tuple(classes),
                            size=size, channels=channels, encoding=encoding,
                            quality=options.quality if encoding == "jpeg" else None,
                            seed=options.seed, splits=written)
        write_manifest(staging, manifest)
        if target.exists():
            target.rmdir()  # empty, checked above
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _plan(source: str, options: PrepareOptions
          ) -> tuple[str, Path, list[str], dict[str, _Split], int, int]:
    """What to write: dataset name, source folder, classes, splits, channels and size."""
    from sslbench.data.discovery import require

    folder = Path(source).expanduser()
    if folder.is_dir():
        dataset = "imagefolder"
        if not (folder / "val").is_dir():
            raise UserError(f"{folder} has no val/ folder; an image folder holds "
                            "train/<class>/*.jpg and val/<class>/*.jpg")
    elif "/" in source:
        raise UserError(f"{source!r} is not a folder; name an image folder (train/ and val/) "
                        "or a registered dataset (see `sslbench datasets`)")
    else:
        dataset = get_info(source).name  # a UserError listing the datasets if unknown
        folder = None if dataset == "synthetic" else require(dataset, options.data_dir)
    info = get_info(dataset)
    if folder is not None and info.configurable:
        size = options.size or info.image_size
        return (dataset, folder, *_image_folder_splits(folder, options, size), 3, size)
    if options.class_list is not None:
        raise UserError(f"dataset {dataset!r} has fixed classes; --class-list applies to image "
                        "folders only")
    from sslbench.data import load_dataset

    data = load_dataset(dataset, options.data_dir, seed=options.seed)
    size = options.size or info.image_size
    arrays = {"train": (data.train_images, data.train_labels),
              "test": (data.test_images, data.test_labels)}
    if data.unlabeled_images is not None:
        arrays["unlabeled"] = (data.unlabeled_images, None)
    splits = {name: _Split(np.full(len(images), -1) if labels is None else labels.numpy(),
                           images.numpy())
              for name, (images, labels) in arrays.items()}
    classes = [str(i) for i in range(info.num_classes)]
    return dataset, Path(data.source), classes, splits, info.channels, size


def _image_folder_splits(folder: Path, options: PrepareOptions, size: int
                         ) -> tuple[list[str], dict[str, _Split]]:
    classes = imagefolder.find_classes(folder, options.class_list)
    splits = {}
    for name, sub in (("train", "train"), ("test", "val")):
        files: list[Path] = []
        labels: list[int] = []
        for label, cls in enumerate(classes):
            found = imagefolder.list_images(folder / sub / cls)
            if not found:
                raise UserError(f"{folder / sub / cls} holds no images "
                                f"({', '.join(imagefolder.IMAGE_EXTENSIONS)})")
            files += found
            labels += [label] * len(found)
        splits[name] = _Split(np.asarray(labels, dtype=np.int64), files)
    return classes, splits


def _encode_images(images: Sequence[Path | np.ndarray], *, size: int, encoding: str,
                   quality: int) -> list[bytes]:
    """What an encoding process does to a chunk of image files or arrays."""
    return [_encode(imagefolder.load_image(image, size) if isinstance(image, Path)
                    else _resized(image, size), encoding, quality) for image in images]


def _resized(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 [C, H, W] (square) at ``size`` px."""
    if image.shape[-1] == size:
        return image
    from PIL import Image

    plane = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    resized = np.asarray(Image.fromarray(plane).resize((size, size), Image.Resampling.BILINEAR))
    return resized[None] if image.shape[0] == 1 else resized.transpose(2, 0, 1)


def _encode(image: np.ndarray, encoding: str, quality: int) -> bytes:
    """uint8 [C, S, S] → the bytes stored for it."""
    if encoding == "raw":
        return np.ascontiguousarray(image).tobytes()
    from PIL import Image

    plane = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(plane)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class _InProcess:
    """The pool's ``map`` in this process (``--workers 0``)."""

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Any]:
        return map(fn, items)

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _pool(workers: int) -> ProcessPoolExecutor | _InProcess:
    if workers <= 0:
        return _InProcess()
    import multiprocessing

    # spawn: the workers import numpy and Pillow only, and never inherit torch's threads
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _write_split(root: Path, name: str, split: _Split, pool: Any,
                 encode: Callable[[Sequence[Any]], list[bytes]], ext: str,
                 options: PrepareOptions) -> SplitInfo:
    """The split in a seeded random order, ``shard_size`` images per shard; its label and index
    arrays beside them."""
    wds = webdataset()
    count = len(split.labels)
    salt = sum(name.encode())  # each split its own order
    order = np.random.default_rng([options.seed, salt]).permutation(count)
    payloads = _encoded(pool, encode, split.images, order)
    shards: list[ShardInfo] = []
    for first in range(0, count, options.shard_size):
        positions = order[first:first + options.shard_size]
        path = root / f"{name}-{len(shards):06d}.tar"
        with wds.TarWriter(str(path), encoder=False, mtime=0.0) as writer:
            for index in positions.tolist():
                writer.write({"__key__": f"{index:09d}", ext: next(payloads),
                              "cls": str(int(split.labels[index])).encode()})
        shards.append(ShardInfo(path.name, len(positions), path.stat().st_size,
                                sha256_file(path)))
    return SplitInfo(count=count, shards=tuple(shards),
                     labels=_save_array(root, f"{name}.labels.npy", split.labels[order]),
                     index=_save_array(root, f"{name}.index.npy", order))


def _encoded(pool: Any, encode: Callable[[Sequence[Any]], list[bytes]],
             images: Sequence[Any], order: np.ndarray) -> Iterator[bytes]:
    """The images encoded, in ``order``; ``_BLOCK`` images in flight at most, sent to the
    processes in chunks of ``_CHUNK``."""
    for start in range(0, len(order), _BLOCK):
        block = order[start:start + _BLOCK].tolist()
        chunks = [[images[i] for i in block[j:j + _CHUNK]] for j in range(0, len(block), _CHUNK)]
        for encoded in pool.map(encode, chunks):
            yield from encoded


def _save_array(root: Path, name: str, array: np.ndarray) -> ArrayFile:
    np.save(root / name, np.ascontiguousarray(array, dtype=np.int64), allow_pickle=False)
    return ArrayFile(name, sha256_file(root / name))
