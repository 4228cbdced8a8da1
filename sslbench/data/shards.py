"""Prepared datasets: images decoded once, stored in WebDataset shards with a manifest.

``sslbench data prepare SOURCE --size S --out DIR`` (:mod:`sslbench.data.prepare`) writes::

    DIR/manifest.json              what is there: dataset, classes, size, encoding, every shard
                                   with its sample count, byte size and sha256, and a checksum
    DIR/train-000000.tar ...       WebDataset shards (POSIX tar): KEY.jpg (or KEY.u8), KEY.cls
    DIR/test-000000.tar ...        the labelled test split (an image folder's val/)
    DIR/unlabeled-000000.tar ...   STL-10's unlabeled split, where there is one
    DIR/SPLIT.labels.npy           the labels of a split, in stored order
    DIR/SPLIT.index.npy            the stable sample index of each stored sample: its position in
                                   the source split's own order (sorted classes, sorted files)

Samples are stored in a seeded random order, so that every shard mixes the classes (a shuffle
buffer over class-sorted shards would hardly shuffle) and the first N samples of a split are a
random subset of it. KEY is the stable index, zero-padded: a later class-stratified validation
split can be carved from ``labels`` and ``index`` without reading a shard.

Images are square (the centred square of the source image, resized to ``size``), uint8, stored
as JPEG, or raw for small sizes (``KEY.u8``: C·S·S bytes, channels first).

This module reads manifests and checks them (torch-free); the readers of shards (a split into
memory, lazy access for evaluation) import torch inside. The training stream is
:mod:`sslbench.data.stream`.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sslbench.canonical import canonical_json
from sslbench.errors import RunFailure, UserError

if TYPE_CHECKING:
    import torch

FORMAT = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "test", "unlabeled")
Encoding = Literal["jpeg", "raw"]
EXTENSION: dict[str, str] = {"jpeg": "jpg", "raw": "u8"}
PREPARE_HINT = "prepare it with `sslbench data prepare SOURCE --size S --out DIR`"


@dataclass(frozen=True)
class ShardInfo:
    name: str  # the file, relative to the prepared folder
    count: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class ArrayFile:
    name: str
    sha256: str


@dataclass(frozen=True)
class SplitInfo:
    count: int
    shards: tuple[ShardInfo, ...]
    labels: ArrayFile  # int64 [count], in stored order
    index: ArrayFile  # int64 [count]: the stable sample index of each stored sample


@dataclass(frozen=True)
class Manifest:
    """What a prepared folder holds (``manifest.json``)."""

    dataset: str  # the registered dataset it was prepared from
    source: str  # the folder it was read from
    classes: tuple[str, ...]
    size: int
    channels: int
    encoding: Encoding
    quality: int | None  # JPEG quality; None for raw
    seed: int  # of the stored order
    splits: dict[str, SplitInfo]

    @property
    def pretrain_split(self) -> str:
        """What self-supervised pretraining reads: the unlabeled split where there is one."""
        return "unlabeled" if "unlabeled" in self.splits else "train"

    @property
    def image_bytes(self) -> int:
        return self.channels * self.size * self.size

    def decoded_bytes(self, splits: Sequence[str] | None = None) -> int:
        """The size of the given splits (all of them by default) decoded into uint8 tensors."""
        names = self.splits if splits is None else splits
        return sum(self.splits[s].count for s in names) * self.image_bytes

    def to_json(self) -> dict[str, Any]:
        body = {"format": FORMAT, **asdict(self)}
        return {**body, "checksum": _sha256_text(canonical_json(body))}


@dataclass(frozen=True)
class Prepared:
    """A prepared folder and its manifest: what a streamed dataset reads from."""

    root: Path
    manifest: Manifest


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(root: Path, manifest: Manifest) -> None:
    (root / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1) + "\n")


def read_manifest(root: str | Path) -> Manifest:
    """The manifest of prepared folder ``root``; a one-line UserError if it is missing, is not
    a manifest, or does not match its own checksum."""
    folder = Path(root).expanduser()
    path = folder / MANIFEST
    if not path.is_file():
        what = "does not exist" if not folder.exists() else f"has no {MANIFEST}"
        raise UserError(f"prepared data {str(folder)!r} {what}; {PREPARE_HINT}")
    try:
        raw = json.loads(path.read_text())
        checksum = raw.pop("checksum")
        if raw.get("format") != FORMAT:
            raise UserError(f"{path} is format {raw.get('format')!r}, this sslbench reads "
                            f"format {FORMAT}; prepare the data again")
        body = dict(raw)
        body.pop("format")
        splits = {
            name: SplitInfo(count=s["count"], shards=tuple(ShardInfo(**x) for x in s["shards"]),
                            labels=ArrayFile(**s["labels"]), index=ArrayFile(**s["index"]))
            for name, s in body.pop("splits").items()
        }
        manifest = Manifest(**{**body, "classes": tuple(body["classes"]), "splits": splits})
    except UserError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path} is not an sslbench manifest ({type(exc).__name__}: {exc}); "
                        "prepare the data again") from None
    if manifest.to_json()["checksum"] != checksum:
        raise UserError(f"{path} does not match its checksum (edited or damaged); prepare the "
                        "data again")
    if "train" not in manifest.splits or "test" not in manifest.splits:
        raise UserError(f"{path} lists no train or no test split; prepare the data again")
    return manifest


def check_files(root: Path, manifest: Manifest, *, full: bool = False) -> None:
    """Every file the manifest lists is there with its byte size (``full``: and its sha256);
    the label and index arrays always by sha256 (they are small). A one-line UserError names the
    first file that is missing or differs."""
    for split in manifest.splits.values():
        for array in (split.labels, split.index):
            _check_file(root / array.name, None, array.sha256)
        for shard in split.shards:
            _check_file(root / shard.name, shard.bytes, shard.sha256 if full else None)


def _check_file(path: Path, size: int | None, sha256: str | None) -> None:
    if not path.is_file():
        raise UserError(f"shard file {path} is missing (listed in the manifest); restore it or "
                        "prepare the data again")
    if size is not None and path.stat().st_size != size:
        raise UserError(f"shard file {path} has {path.stat().st_size} bytes, the manifest says "
                        f"{size} (truncated or replaced); restore it or prepare the data again")
    if sha256 is not None and sha256_file(path) != sha256:
        raise UserError(f"shard file {path} is corrupt (its sha256 differs from the manifest); "
                        "restore it or prepare the data again")


def check_classes(manifest: Manifest, class_list: str | None, root: Path) -> None:
    """``data.class_list`` given with prepared data must name the classes the shards hold, in
    their order (label i is the i-th class)."""
    if class_list is None:
        return
    from sslbench.data.imagefolder import read_class_list

    wanted = tuple(read_class_list(class_list))
    if wanted == manifest.classes:
        return
    extra = [c for c in wanted if c not in manifest.classes]
    missing = [c for c in manifest.classes if c not in wanted]
    detail = (f"{len(extra)} not in the shards (e.g. {extra[0]})" if extra else
              f"{len(missing)} of the shards' classes not in it (e.g. {missing[0]})" if missing
              else "the same classes in another order")
    raise UserError(f"class list {class_list!r} does not match the classes of {root} "
                    f"({len(wanted)} vs {len(manifest.classes)}: {detail}); prepare the data "
                    "with this list or drop data.class_list")


def read_array(root: Path, array: ArrayFile) -> np.ndarray:
    return np.load(root / array.name, allow_pickle=False)


# -- reading shards ------------------------------------------------------------------------------


def webdataset() -> Any:
    """The WebDataset module, or a one-line UserError naming the extra that installs it."""
    try:
        import webdataset as wds
    except ImportError:
        raise UserError("prepared shards need WebDataset: pip install 'sslbench[stream]'"
                        ) from None
    return wds


def shard_samples(paths: Sequence[Path]) -> Iterator[tuple[int, int, bytes]]:
    """(stable index, label, encoded image) of every sample of the shards, in stored order.

    A shard that is not a readable tar, or a sample without its image or label, is a
    RunFailure naming the shard (the manifest matched: the file was damaged in place)."""
    wds = webdataset()
    for path in paths:
        try:
            for sample in wds.tarfile_samples([{"url": str(path)}]):
                yield unpack_sample(sample)
        except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
            raise RunFailure(f"cannot read shard {path} ({type(exc).__name__}: {exc}); check it "
                             f"with `sslbench data verify {path.parent}`") from None


def unpack_sample(sample: dict[str, Any]) -> tuple[int, int, bytes]:
    """A WebDataset sample of a prepared shard → (stable index, label, encoded image)."""
    payload = sample.get("jpg", sample.get("u8"))
    if payload is None:
        raise KeyError(f"sample {sample.get('__key__')!r} has no .jpg or .u8 member")
    return int(sample["__key__"]), int(sample["cls"]), payload


def decode_image(payload: bytes, encoding: str, channels: int, size: int) -> np.ndarray:
    """One stored image → uint8 [C, S, S] (Pillow's libjpeg for JPEG)."""
    if encoding == "raw":
        array = np.frombuffer(payload, dtype=np.uint8)
        if array.size != channels * size * size:
            raise ValueError(f"a raw image of {array.size} bytes, expected "
                             f"{channels * size * size}")
        return array.reshape(channels, size, size)
    from PIL import Image

    with Image.open(io.BytesIO(payload)) as image:
        pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    if pixels.shape[:2] != (size, size):
        raise ValueError(f"an image of {pixels.shape[1]}×{pixels.shape[0]}, expected {size}²")
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def decode_many(payloads: Sequence[bytes], encoding: str, channels: int, size: int
                ) -> np.ndarray:
    """Stored images → uint8 [N, C, S, S]; what a decoding worker process runs on a chunk."""
    out = np.empty((len(payloads), channels, size, size), dtype=np.uint8)
    for i, payload in enumerate(payloads):
        out[i] = decode_image(payload, encoding, channels, size)
    return out


def read_split(root: Path, manifest: Manifest, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split decoded into memory: uint8 [N, C, S, S] and int64 labels [N], stored order."""
    return ShardedImages(root, manifest, split)[:], labels_of(root, manifest, split)


def labels_of(root: Path, manifest: Manifest, split: str) -> torch.Tensor:
    import torch

    return torch.from_numpy(read_array(root, manifest.splits[split].labels).astype(np.int64))


class ShardedImages:
    """A split left in its shards, indexed like the uint8 tensor [N, C, S, S] it stands for.

    What evaluation needs of a streamed dataset: ``shape``, ``len``, a slice (the shards that
    hold it are read and only its samples decoded) and a tensor of positions (a label subset, the
    monitor's kNN sample: the shards holding any of them are read once, in order). Every read
    returns a CPU uint8 tensor; nothing is kept between reads.
    """

    def __init__(self, root: Path, manifest: Manifest, split: str) -> None:
        self.root, self.manifest, self.split = root, manifest, split
        self.shards = manifest.splits[split].shards
        self.starts = np.cumsum([0] + [s.count for s in self.shards])  # first position of each

    @property
    def shape(self) -> tuple[int, int, int, int]:
        m = self.manifest
        return (int(self.starts[-1]), m.channels, m.size, m.size)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice | torch.Tensor | Sequence[int]) -> torch.Tensor:
        import torch

        n = len(self)
        if isinstance(key, slice):
            positions = np.arange(n)[key]
        else:
            positions = np.asarray(key.cpu() if isinstance(key, torch.Tensor) else key,
                                   dtype=np.int64)
            if positions.size and (positions.min() < -n or positions.max() >= n):
                raise IndexError(f"position out of range for {n} images")
            positions = positions % max(n, 1)
        return torch.from_numpy(self._read(positions))

    def _read(self, positions: np.ndarray) -> np.ndarray:
        m = self.manifest
        out = np.empty((positions.size, m.channels, m.size, m.size), dtype=np.uint8)
        wanted: dict[int, list[int]] = {}  # stored position → where it goes in `out`
        for slot, position in enumerate(positions.tolist()):
            wanted.setdefault(position, []).append(slot)
        shard_ids = np.unique(np.searchsorted(self.starts, positions, side="right") - 1)
        for shard in shard_ids.tolist():
            position = int(self.starts[shard])
            path = self.root / self.shards[shard].name
            for _, _, payload in shard_samples([path]):
                if position in wanted:
                    image = decode_image(payload, m.encoding, m.channels, m.size)
                    out[wanted[position]] = image
                position += 1
        return out
