"""A trained encoder out of sslbench: `sslbench export` and `sslbench.load_encoder`.

Three formats, each holding the backbone (no projector, no predictor, no momentum target) and, as
metadata, what it needs to be used: the architecture, the input channels, size and normalisation,
the run it came from and that run's whole config.

- ``safetensors``: the backbone's tensors under sslbench's names in a safetensors file (no
  pickle: loading it runs no code); ``load_encoder`` rebuilds the module.
- ``torchvision`` (ResNet-18/50 of width 64): the tensors under torchvision's names, so that
  ``torchvision.models.resnet18()`` (or ``resnet50()``) loads them with ``load_state_dict`` once
  its classifier is removed and, for the CIFAR stem (3×3 stride-1 conv, no max-pool) or other
  than 3 input channels, its stem replaced; :func:`torchvision_recipe` writes those lines.
  Also a safetensors file.
- ``torchscript``: the :class:`Encoder` (normalisation included) compiled by ``torch.jit`` with
  the metadata as an extra file: ``torch.jit.load`` runs it without sslbench. PyTorch marks
  TorchScript deprecated in favour of ``torch.export``; it still loads everywhere.

``load_encoder`` returns an :class:`Encoder` in eval mode: it takes uint8 images or floats in
[0, 1], ``[N, C, H, W]``, normalises them as in pretraining and returns the backbone's features.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslbench.config import ModelConfig, RunConfig
from sslbench.data.transfer import encoder_input
from sslbench.errors import UserError
from sslbench.models import build_backbone
from sslbench.resolve import config_from_dict
from sslbench.store import RunRecord, Store
from sslbench.train.checkpoint import load_checkpoint
from sslbench.version import __version__

FORMATS = ("safetensors", "torchvision", "torchscript")
METADATA_FORMAT = "sslbench-encoder/1"
_TORCHSCRIPT_META = "sslbench.json"  # the extra file of a TorchScript export
_EXPORTABLE_KINDS = ("pretrain", "trial")
_TORCHVISION_WIDTH = 64  # torchvision's resnet18/resnet50 have no width multiplier


class Encoder(nn.Module):
    """A backbone with the input normalisation of the data it was pretrained on.

    ``encoder(images)`` takes uint8 images or floats in [0, 1], ``[N, in_channels, H, W]``
    (``image_size`` is the side it was trained at; the backbones pool globally, so other sizes
    run too), and returns features ``[N, out_dim]``. ``metadata`` says where it came from.
    """

    def __init__(self, backbone: nn.Module, mean: tuple[float, ...], std: tuple[float, ...],
                 image_size: int, metadata: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.in_channels: int = len(mean)
        self.image_size: int = image_size
        self.out_dim: int = backbone.out_dim
        self.metadata = metadata or {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # (x - mean) / std in the same float operations as sslbench.data.augment.normalize, so
        # that the features are bit-identical to those the run's evaluations used
        scale, shift = 1 / self.std, -self.mean / self.std
        if images.dtype == torch.uint8:
            return self.backbone(images.float() * (scale / 255) + shift)
        return self.backbone(images * scale + shift)


# -- loading -----------------------------------------------------------------------------------


def load_encoder(source: int | str | os.PathLike[str], *, db: str | None = None) -> nn.Module:
    """The encoder of a run (its id, in ``db``: ``$SSLBENCH_DB`` or ./sslbench.sqlite by
    default) or of a file written by ``sslbench export``, in eval mode on the CPU.

    A run or a safetensors file gives an :class:`Encoder`; a TorchScript file the compiled
    ``Encoder`` (a ``torch.jit.ScriptModule`` with the same ``forward``).
    """
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        run, state = _run_checkpoint(int(source), db)
        encoder = _encoder_from_run(run, state)
    else:
        path = Path(source)
        if not path.is_file():
            raise UserError(f"no encoder file {str(path)!r} (pass a run id or a file written by "
                            "`sslbench export`)")
        encoder = _load_torchscript(path) if _is_zip(path) else _load_safetensors(path)
    return encoder.eval()


def _run_checkpoint(run_id: int, db: str | None) -> tuple[RunRecord, dict[str, Any]]:
    """The run and the method state of its final checkpoint."""
    run, checkpoint = _exportable_run(run_id, db)
    return run, load_checkpoint(checkpoint)["method"]


def _exportable_run(run_id: int, db: str | None) -> tuple[RunRecord, str]:
    """A run that trained an encoder, and the path of its final checkpoint; else a UserError."""
    with Store.open(db, create=False) as store:
        run = store.get_run(run_id)
    if run.kind not in _EXPORTABLE_KINDS:
        whose = (f"its encoder is run {run.parent_id}'s" if run.parent_id is not None
                 else "it trained no encoder")
        raise UserError(f"run {run_id} is a {run.kind} run: {whose}; pass a pretrain run id "
                        "(see `sslbench runs list --kind pretrain`)")
    checkpoints = [a for a in run.artifacts if a.name == "checkpoint"]
    if run.status != "COMPLETED" or not checkpoints:
        raise UserError(f"run {run_id} is {run.status} and has no final checkpoint (see "
                        f"`sslbench runs show {run_id}`)")
    return run, checkpoints[-1].path


def _encoder_from_run(run: RunRecord, method_state: dict[str, Any]) -> Encoder:
    cfg = config_from_dict(run.config)
    backbone = _backbone(cfg.model, _input_of(cfg)["in_channels"])
    prefix = "backbone."
    backbone.load_state_dict({k[len(prefix):]: v for k, v in method_state.items()
                              if k.startswith(prefix)})
    return _encoder(backbone, _metadata(run, cfg))


def _input_of(cfg: RunConfig) -> dict[str, Any]:
    """The input the run's encoder was trained on: channels, side and normalisation."""
    info = encoder_input(cfg.data)
    return {"in_channels": info.channels, "image_size": info.image_size,
            "mean": list(info.mean), "std": list(info.std)}


def _metadata(run: RunRecord, cfg: RunConfig) -> dict[str, Any]:
    return {"format": METADATA_FORMAT, "model": asdict(cfg.model), **_input_of(cfg),
            "run": {"id": run.id, "kind": run.kind, "method": run.method, "dataset": run.dataset,
                    "seed": run.seed, "config_hash": run.config_hash,
                    "git_commit": run.git_commit, "sslbench": __version__},
            "config": run.config}


def _backbone(model: dict[str, Any] | ModelConfig, in_channels: int) -> nn.Module:
    return build_backbone(model if isinstance(model, ModelConfig) else ModelConfig(**model),
                          in_channels)


def _encoder(backbone: nn.Module, metadata: dict[str, Any]) -> Encoder:
    """In eval mode: every export (a TorchScript one keeps its mode) and load is for inference."""
    return Encoder(backbone, tuple(metadata["mean"]), tuple(metadata["std"]),
                   int(metadata["image_size"]), metadata).eval()


def _load_safetensors(path: Path) -> Encoder:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            header = file.metadata() or {}
        tensors = load_file(str(path))
        metadata = json.loads(header["sslbench"])
    except (SafetensorError, KeyError, ValueError, OSError):
        raise UserError(f"{str(path)!r} is not an encoder written by `sslbench export`") from None
    backbone = _backbone(metadata["model"], int(metadata["in_channels"]))
    if metadata.get("layout") == "torchvision":
        names = torchvision_names(backbone.state_dict(), metadata["model"]["backbone"])
        ours = {theirs: mine for mine, theirs in names.items()}
        tensors = {ours[k]: v for k, v in tensors.items()}
    backbone.load_state_dict(tensors)
    return _encoder(backbone, metadata)


def _load_torchscript(path: Path) -> nn.Module:
    extra = {_TORCHSCRIPT_META: ""}
    with warnings.catch_warnings():  # torch ≥ 2.10 marks TorchScript deprecated
        warnings.simplefilter("ignore", FutureWarning)
        try:
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except RuntimeError:
            raise UserError(f"{str(path)!r} is not a TorchScript file") from None
    module.metadata = json.loads(extra[_TORCHSCRIPT_META] or "{}")
    return module


def _is_zip(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(4) == b"PK\x03\x04"  # TorchScript archives are zip files


# -- exporting ---------------------------------------------------------------------------------


def export_encoder(run_id: int, out: str | os.PathLike[str] | None = None,
                   fmt: str = "safetensors", *, db: str | None = None) -> Path:
    """Write run ``run_id``'s encoder in format ``fmt`` (see the module doc) to ``out`` (default
    ``run<ID>-<backbone>.<ext>`` in the current folder); the path written.

    Everything is checked (format, output folder, run, checkpoint, backbone) before the file is
    written, atomically: a failure leaves no partial file.
    """
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    run, checkpoint = _exportable_run(run_id, db)
    cfg = config_from_dict(run.config)
    target = _output_path(out, run_id, cfg.model.backbone, fmt)
    if fmt == "torchvision":
        check_torchvision_fits(cfg.model)
    encoder = _encoder_from_run(run, load_checkpoint(checkpoint)["method"])
    _WRITERS[fmt](encoder, target)
    return target


def _output_path(out: str | os.PathLike[str] | None, run_id: int, backbone: str,
                 fmt: str) -> Path:
    suffix = ".pt" if fmt == "torchscript" else ".safetensors"
    layout = "-torchvision" if fmt == "torchvision" else ""
    path = Path(out) if out is not None else Path(f"run{run_id}-{backbone}{layout}{suffix}")
    folder = path.expanduser().absolute().parent
    if path.is_dir():
        raise UserError(f"--out {str(path)!r} is a folder; name the file to write")
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {str(path)!r}: {str(folder)!r} is not a writable folder")
    return path


def check_torchvision_fits(model: ModelConfig) -> None:
    """The torchvision layout exists for ResNet-18/50 of width 64 only."""
    if model.backbone not in ("resnet18", "resnet50"):
        raise UserError(f"--format torchvision takes a ResNet-18/50 backbone, not "
                        f"{model.backbone}; use --format safetensors or torchscript")
    if model.width != _TORCHVISION_WIDTH:
        raise UserError(f"--format torchvision: model.width={model.width} has no torchvision "
                        f"equivalent (resnet18/50 are width {_TORCHVISION_WIDTH}); use "
                        "--format safetensors or torchscript")


def _write_atomically(target: Path, write: Callable[[Path], None]) -> None:
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        raise UserError(f"cannot write {str(target)!r}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _save_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, Any],
                  target: Path) -> None:
    from safetensors.torch import save_file

    contiguous = {k: v.detach().contiguous() for k, v in tensors.items()}
    _write_atomically(target, lambda tmp: save_file(
        contiguous, str(tmp), metadata={"sslbench": json.dumps(metadata)}))


def _write_safetensors(encoder: Encoder, target: Path) -> None:
    _save_tensors(encoder.backbone.state_dict(), {**encoder.metadata, "layout": "sslbench"},
                  target)


def _write_torchvision(encoder: Encoder, target: Path) -> None:
    state = encoder.backbone.state_dict()
    names = torchvision_names(state, encoder.metadata["model"]["backbone"])
    model = ModelConfig(**encoder.metadata["model"])
    _save_tensors({names[k]: v for k, v in state.items()},
                  {**encoder.metadata, "layout": "torchvision",
                   "torchvision_recipe": torchvision_recipe(model, encoder.in_channels)}, target)


def _write_torchscript(encoder: Encoder, target: Path) -> None:
    with warnings.catch_warnings():  # torch ≥ 2.10 marks TorchScript deprecated
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(encoder)
        extra = {_TORCHSCRIPT_META: json.dumps(encoder.metadata)}
        _write_atomically(target, lambda tmp: torch.jit.save(scripted, str(tmp),
                                                             _extra_files=extra))


_WRITERS: dict[str, Callable[[Encoder, Path], None]] = {
    "safetensors": _write_safetensors,
    "torchvision": _write_torchvision,
    "torchscript": _write_torchscript,
}

# -- torchvision's names -------------------------------------------------------------------------

# sslbench's ResNet (sslbench.models.backbones) → torchvision.models.ResNet: the stem's conv and
# BatchNorm, then the layers of each block's body by position (ReLUs have no tensors).
_BLOCK_LAYERS = {
    "resnet18": {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2"},
    "resnet50": {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2", "6": "conv3", "7": "bn3"},
}
_STEM = {"0": "conv1", "1": "bn1"}
_KEY = re.compile(r"^(?:stem\.(?P<stem>\d+)|stages\.(?P<stage>\d+)\.(?P<block>\d+)\."
                  r"(?:body\.(?P<body>\d+)|shortcut\.(?P<short>\d+)))\.(?P<tensor>\w+)$")


def torchvision_names(state: dict[str, torch.Tensor], backbone: str) -> dict[str, str]:
    """Each key of an sslbench ResNet's state dict → torchvision's name for the same tensor."""
    layers = _BLOCK_LAYERS[backbone]
    names = {}
    for key in state:
        match = _KEY.match(key)
        if match is None:
            raise ValueError(f"{key!r} is not a key of an sslbench ResNet")
        part = match.groupdict()
        if part["stem"] is not None:
            names[key] = f"{_STEM[part['stem']]}.{part['tensor']}"
            continue
        block = f"layer{int(part['stage']) + 1}.{part['block']}"
        layer = (layers[part["body"]] if part["body"] is not None
                 else f"downsample.{part['short']}")
        names[key] = f"{block}.{layer}.{part['tensor']}"
    return names


def torchvision_recipe(model: ModelConfig, in_channels: int) -> str:
    """The lines that load a torchvision-layout export into torchvision's ResNet."""
    lines = ["import torch, torchvision",
             "from safetensors.torch import load_file",
             f"model = torchvision.models.{model.backbone}()",
             "model.fc = torch.nn.Identity()  # the export holds the encoder, not a classifier"]
    if model.stem == "cifar":
        lines += [f"model.conv1 = torch.nn.Conv2d({in_channels}, 64, 3, 1, 1, bias=False)"
                  "  # CIFAR stem: 3x3 conv, stride 1",
                  "model.maxpool = torch.nn.Identity()  # and no max-pool"]
    elif in_channels != 3:
        lines.append(f"model.conv1 = torch.nn.Conv2d({in_channels}, 64, 7, 2, 3, bias=False)"
                     f"  # {in_channels} input channel(s)")
    lines.append("model.load_state_dict(load_file(PATH))")
    return "\n".join(lines)
