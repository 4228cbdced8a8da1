"""The run configuration's schema: typed sections, each key with its range beside it.

Torch-free and registry-free: the bottom of the package. Parsing and validation are in
:mod:`sslbench.config.parse`; resolving a method's full config (its defaults, the dataset's, a
file, flags, overrides) needs the method and dataset registries and lives in
:mod:`sslbench.resolve`.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from sslbench.canonical import config_hash


def bounded(default: Any, *, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False, hi_open: bool = False) -> Any:
    """A dataclass field whose value must lie in [lo, hi] (``lo_open``/``hi_open``: open ends);
    checked by :func:`sslbench.config.parse.validate` whenever a config is built::

        temperature: float = bounded(0.2, lo=0.0, lo_open=True)
    """
    return field(default=default,
                 metadata={"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open})


@dataclass
class DataConfig:
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = True
    # imagefolder only: a file naming the class folders to use, one per line (None: all of them),
    # and the side the images are resized to (centre crop of the shorter side; None: 96)
    class_list: str | None = None
    image_size: int | None = bounded(None, lo=8)
    # the validation split (sslbench.data.splits): this share of every class of the train split,
    # fixed by the dataset and val_seed, is what every choice is scored on
    val_fraction: float = bounded(0.1, lo=0.0, hi=0.5, lo_open=True)
    val_seed: int = bounded(0, lo=0)
    # a folder written by `sslbench data prepare` (see sslbench.data.shards), and how a run reads
    # it: decoded into memory, streamed from its shards, or auto: memory when the decoded splits
    # fit memory_budget_gb (a setting, not the machine's memory: the same config reads the same way)
    prepared: str | None = None
    storage: Literal["auto", "memory", "stream"] = "auto"
    memory_budget_gb: float = bounded(8.0, lo=0.0, lo_open=True)
    shuffle_buffer: int = bounded(5000, lo=1)  # stream: samples in the shuffle buffer
    workers: int = bounded(2, lo=0)  # stream: decoding processes (CPU); 0: the training process
    # stream: auto = workers; device (nvJPEG on CUDA) is opt-in, see docs/streaming.md#gpu
    decode: Literal["auto", "device", "workers"] = "auto"
    verify: bool = False  # check every shard's sha256 before the run (else its byte size)


@dataclass
class ViewAugmentConfig:
    """The augmentation of one view, applied per sample to whole batches (see
    ``sslbench.data.augment``). Saturation, hue and grayscale act on RGB data only."""

    crop_min_scale: float = bounded(0.25, lo=0.0, hi=1.0, lo_open=True)
    crop_max_scale: float = bounded(1.0, lo=0.0, hi=1.0, lo_open=True)
    crop_min_ratio: float = bounded(0.75, lo=0.0, lo_open=True)
    crop_max_ratio: float = bounded(4 / 3, lo=0.0, lo_open=True)
    hflip_prob: float = bounded(0.5, lo=0.0, hi=1.0)
    rotation_prob: float = bounded(0.0, lo=0.0, hi=1.0)
    rotation_degrees: float = bounded(30.0, lo=0.0, hi=180.0)  # angle uniform in ±degrees
    # brightness, contrast, saturation and hue, applied together with this probability
    jitter_prob: float = bounded(0.8, lo=0.0, hi=1.0)
    brightness: float = bounded(0.4, lo=0.0, hi=1.0)
    contrast: float = bounded(0.4, lo=0.0, hi=1.0)
    saturation: float = bounded(0.0, lo=0.0, hi=1.0)
    hue: float = bounded(0.0, lo=0.0, hi=0.5)  # fraction of a full turn of the hue circle
    grayscale_prob: float = bounded(0.0, lo=0.0, hi=1.0)
    blur_prob: float = bounded(0.0, lo=0.0, hi=1.0)
    blur_sigma_min: float = bounded(0.1, lo=0.0, lo_open=True)
    blur_sigma_max: float = bounded(2.0, lo=0.0, lo_open=True)
    solarize_prob: float = bounded(0.0, lo=0.0, hi=1.0)  # pixels ≥ 0.5 become 1 - pixel


# Every ViewAugmentConfig key as ``T | None`` with the same range; None keeps ``augment.KEY``.
ViewOverrides = dataclasses.make_dataclass(
    "ViewOverrides",
    [(f.name, typing.get_type_hints(ViewAugmentConfig)[f.name] | None,
      field(default=None, metadata=f.metadata)) for f in dataclasses.fields(ViewAugmentConfig)],
    namespace={"__doc__": "Per-view overrides of the shared ``augment.*`` keys (None: shared).",
               "__module__": __name__},
)


@dataclass
class AugmentConfig(ViewAugmentConfig):
    """``augment.KEY`` sets both views; ``augment.view1.KEY`` / ``augment.view2.KEY`` override it
    for one view, e.g. BYOL's asymmetric recipe (Grill et al. 2020, table 6)::

        augment.view1.blur_prob=1.0 augment.view2.blur_prob=0.1 augment.view2.solarize_prob=0.2

    Multi-crop (Caron et al. 2020, SwAV §3.2; Caron et al. 2021, DINO §3.1): ``small_crops``
    extra low-resolution views of every image, views 3 … 2 + small_crops, each a random resized
    crop of ``small_crop_min_scale``–``small_crop_max_scale`` of the image at
    ``small_crop_size`` pixels with the shared ``augment.*`` keys. A method that takes them says
    so (``Method.multi_crop``); the others refuse them.
    """

    view1: ViewOverrides = field(default_factory=ViewOverrides)  # type: ignore[valid-type]
    view2: ViewOverrides = field(default_factory=ViewOverrides)  # type: ignore[valid-type]
    small_crops: int = bounded(0, lo=0)
    small_crop_size: int | None = bounded(None, lo=1)  # side in pixels; None: half the image's
    small_crop_min_scale: float = bounded(0.05, lo=0.0, hi=1.0, lo_open=True)  # of the image
    small_crop_max_scale: float = bounded(0.4, lo=0.0, hi=1.0, lo_open=True)
    crop_size: int | None = bounded(None, lo=1)  # side of the two global views; None: the image's

    @property
    def num_views(self) -> int:
        """The views the training step gets: the two global ones and the small crops."""
        return 2 + self.small_crops

    def view(self, index: int) -> ViewAugmentConfig:
        """The settings of view ``index``: 1 or 2, the shared keys with that view's overrides;
        3 and above (a small crop), the shared keys with the small crops' scale range."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(ViewAugmentConfig)}
        if index > 2:
            return ViewAugmentConfig(**{**shared, "crop_min_scale": self.small_crop_min_scale,
                                        "crop_max_scale": self.small_crop_max_scale})
        overrides = {"1": self.view1, "2": self.view2}[str(index)]
        own = {k: v for k, v in dataclasses.asdict(overrides).items() if v is not None}
        return ViewAugmentConfig(**{**shared, **own})


@dataclass
class ModelConfig:
    backbone: Literal["convnet", "resnet18", "resnet50"] = "convnet"
    # base channel count (ConvNet) or width of the first stage (ResNet: 64 × the width multiplier)
    width: int = bounded(64, lo=1)
    stem: Literal["cifar", "imagenet"] = "cifar"  # ResNet: 3×3 conv for small images, or 7×7/2
    projector_hidden_dim: int = bounded(512, lo=1)
    projector_dim: int = bounded(128, lo=1)
    projector_layers: int = bounded(2, lo=1)
    # a BatchNorm1d after each hidden Linear of the projector; false: Linear → ReLU, as
    # solo-learn's SimCLR projector (and SimCLR's paper, §2: g(h) = W2 σ(W1 h))
    projector_bn: bool = True
    # how the views go through the network (sslbench.methods.base.Method.forward_views): joint,
    # the global views concatenated into one pass (SimCLR's TF code: BatchNorm statistics over
    # all of them), or separate, one pass per view (solo-learn, BYOL's JAX code: statistics per
    # view); None: the method's own (separate for Barlow Twins and VICReg, joint for the others)
    forward_views: Literal["joint", "separate"] | None = None


@dataclass
class OptimizerConfig:
    name: Literal["adamw", "sgd", "lars"] = "adamw"
    lr: float = bounded(2e-3, lo=0.0, lo_open=True)
    weight_decay: float = bounded(1e-4, lo=0.0)
    momentum: float = bounded(0.9, lo=0.0, hi=1.0, hi_open=True)
    eta: float = bounded(1e-3, lo=0.0, lo_open=True)  # LARS trust coefficient η (You et al. 2017)
    # LARS: the adapted lr γλ is capped at the scheduled lr γ, min(λ, γ) (solo-learn's
    # clip_lars_lr, NVIDIA apex's LARC "clip" mode); false: γλ as in You et al. 2017, Alg. 1
    lars_clip_lr: bool = False
    # weight decay on biases and normalisation weights (1-d tensors) too, as solo-learn with
    # exclude_bias_n_norm_wd false (its SimSiam); false: only weights of 2 dims or more decay
    decay_1d: bool = False
    warmup_epochs: float = bounded(1.0, lo=0.0)
    min_lr_ratio: float = bounded(0.0, lo=0.0, hi=1.0)  # cosine decays to lr * min_lr_ratio
    grad_clip: float = bounded(0.0, lo=0.0)  # max global grad norm; 0 disables clipping
    # lr for the global batch: "linear" uses lr * train.batch_size / reference_batch_size
    # (Goyal et al. 2017), "none" uses lr as given. Independent of the number of workers.
    lr_scaling: Literal["none", "linear"] = "none"
    reference_batch_size: int = bounded(256, lo=1)


@dataclass
class TrainConfig:
    epochs: int = bounded(10, lo=1)
    # A compute budget replaces `epochs` (at most one of the three; see sslbench.train.budget):
    # the schedules (warm-up, cosine lr, EMA τ) are planned to end exactly at it.
    budget_s: float | None = bounded(None, lo=0.0, lo_open=True)  # seconds of training steps
    budget_steps: int | None = bounded(None, lo=1)  # optimizer steps
    budget_flops: float | None = bounded(None, lo=0.0, lo_open=True)  # training FLOPs
    plan_steps: int = bounded(20, lo=3)  # steps timed before a budget_s run fixes its total
    batch_size: int = bounded(256, lo=2)
    seed: int = bounded(0, lo=0, hi=2**32 - 1)  # numpy's generators take 32-bit seeds
    gpus: int | None = bounded(None, lo=0)  # None: a GPU if there is one; 0: CPU; N: N GPU workers
    procs: int = bounded(1, lo=1)  # CPU worker processes (gloo); batch_size is split across workers
    sync_batchnorm: bool = True  # distributed: every BatchNorm over the global batch
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # the conv layout, CPU and CUDA
    compile: bool = False  # torch.compile the method's training step (first steps are slower)
    log_every: int = bounded(50, lo=1)  # steps between progress updates (no per-step host syncs)
    checkpoint_every: int = bounded(0, lo=0)  # steps between mid-epoch checkpoints; 0: epoch ends
    # run folders go to OUTPUT_DIR/<run uid>/; None: beside the database (r.sqlite → r.runs/)
    output_dir: str | None = None
    # which checkpoints stay on disk once the run is done (see sslbench.train.retention)
    keep_checkpoints: Literal["last", "best", "all", "none-after-eval"] = "last"
    tensorboard: str | None = None  # live TensorBoard curves in TENSORBOARD/run<id>-.../


@dataclass
class LinearEvalConfig:
    """Linear probe on frozen, standardised features (train split → ``eval.split``)."""

    epochs: int = bounded(100, lo=1)
    lr: float = bounded(1e-2, lo=0.0, lo_open=True)
    weight_decay: float = bounded(1e-5, lo=0.0)
    batch_size: int = bounded(1024, lo=1)
    batchnorm: bool = False  # a BatchNorm1d (no affine) in front of the layer
    augment: bool = False  # features of augmented train images, recomputed every step
    layer: str = "backbone"  # backbone, stageN or projector (see sslbench.eval.layers)


@dataclass
class KnnConfig:
    """Weighted kNN on l2-normalised features (Wu et al. 2018): k neighbours, temperature T."""

    k: int = bounded(200, lo=1)
    temperature: float = bounded(0.1, lo=0.0, lo_open=True)
    layer: str = "backbone"
    monitor_every: int = bounded(1, lo=0)  # epochs between online kNN during pretraining; 0: off
    monitor_train_size: int = bounded(10000, lo=1)  # train images used by the online monitor


@dataclass
class SemiSupervisedConfig:
    """Fine-tuning of the whole encoder + a linear head on a class-balanced label subset."""

    steps: int = bounded(500, lo=1)  # optimizer steps, the same for every subset size
    batch_size: int = bounded(128, lo=1)
    lr: float = bounded(1e-3, lo=0.0, lo_open=True)
    weight_decay: float = bounded(1e-4, lo=0.0)
    augment: bool = True  # random resized crop + flip
    # fixes the subsets (with the dataset and the label spec)
    split_seed: int = bounded(0, lo=0, hi=2**32 - 1)


@dataclass
class DiagnosticsConfig:
    """Per-epoch collapse/rank/alignment/uniformity/InfoNCE on a fixed held-out batch."""

    enabled: bool = True
    batch_size: int = bounded(512, lo=2)  # K of the InfoNCE estimate; log K is its ceiling
    temperature: float = bounded(0.1, lo=0.0, lo_open=True)  # of the InfoNCE critic
    collapse_ratio: float = bounded(0.1, lo=0.0)  # collapsed when std < collapse_ratio / sqrt(d)
    stop_on_collapse: bool = False
    # KDE entropy / ER bound / information bottleneck (sslbench.mi.entropy): the kernel, its
    # bandwidth (silverman, scott or a number; the vMF κ is 1/h²) and the vMF q's κ of the ER bound
    kde_kernel: Literal["vmf", "gaussian"] = "vmf"
    kde_bandwidth: str = "silverman"
    er_kappa: float = bounded(10.0, lo=0.0, lo_open=True)


@dataclass
class EvalConfig:
    protocols: list[str] = field(default_factory=lambda: ["linear"])
    # test: the numbers a run reports (classifiers fit on the whole train split); val: a choice
    # (sweep trials; fit on train minus the validation split, scored on it, test never read)
    split: Literal["test", "val"] = "test"
    linear: LinearEvalConfig = field(default_factory=LinearEvalConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    semi: SemiSupervisedConfig = field(default_factory=SemiSupervisedConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)


EVAL_PROTOCOLS = ("linear", "knn", "semi:SPEC")  # SPEC: 1 (%), 10%, 0.05 or 10/class
# A probed layer, optionally with its spatial readout: backbone, stageN or projector, then
# ":gap" (the global average pool, the default) or ":gridK" (the K×K average pool of the last
# feature map, flattened; K ≤ 8): sslbench.eval.layers.
LAYER_PATTERN = re.compile(r"^(backbone|projector|stage[1-9][0-9]*)(:(gap|grid[1-8]))?$")
LAYER_HELP = ("backbone, stageN (N = 1 for the first stage of the backbone) or projector, "
              "optionally :gridK (backbone:grid3, the 3×3 average pool of the last feature map "
              "instead of the global one; K ≤ 8)")


def parse_layer(layer: str) -> tuple[str, int]:
    """(base layer, grid side) of a valid ``layer``: ``"stage2:grid3"`` → ``("stage2", 3)``,
    ``"backbone"`` and ``"backbone:gap"`` → ``("backbone", 1)``."""
    base, _, pool = layer.partition(":")
    return base, int(pool.removeprefix("grid")) if pool.startswith("grid") else 1
RECIPE_KEY = "recipe"  # a recipe file's metadata block, not config (sslbench.config.recipes)


@dataclass
class RunConfig:
    method: Any  # the method's own dataclass; its ``name`` field says which
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def method_name(self) -> str:
        return str(self.method.name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def config_hash(self) -> str:
        return config_hash(self.to_dict())


# A tiny, fast setup for the synthetic dataset (tests, smoke runs).
# SimCLR's colour recipe (Chen et al. 2020, appendix A): jitter 0.4/0.4/0.4/0.1 with p = 0.8,
# grayscale p = 0.2, crops from 8 % of the image; blur only for images of 96 px and more.
_RGB_AUGMENT: dict[str, Any] = {
    "augment.crop_min_scale": 0.08,
    "augment.saturation": 0.4,
    "augment.hue": 0.1,
    "augment.grayscale_prob": 0.2,
}
_RGB_96PX: dict[str, Any] = {
    **_RGB_AUGMENT,
    "augment.blur_prob": 0.5,
    "model.backbone": "resnet18",
    "model.stem": "imagenet",
}

DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    # Sized for the CPU: SimCLR reaches ~86 % linear top-1 in ~4 minutes on 2 cores.
    "fashion-mnist": {
        "model.width": 32,
        "train.epochs": 3,
    },
    "mnist": {
        "model.width": 32,
        "train.epochs": 3,
    },
    "cifar10": {**_RGB_AUGMENT, "model.backbone": "resnet18"},
    "cifar100": {**_RGB_AUGMENT, "model.backbone": "resnet18"},
    "stl10": _RGB_96PX,
    "imagefolder": _RGB_96PX,
    "synthetic": {
        "model.width": 16,
        "model.projector_hidden_dim": 64,
        "model.projector_dim": 32,
        "train.epochs": 2,
        "train.batch_size": 64,
        "eval.linear.epochs": 10,
    },
}



KDE_BANDWIDTH_RULES = ("silverman", "scott")  # see sslbench.mi.entropy.select_bandwidth


@dataclass
class SupervisedConfig:
    """The "method" of the supervised-from-scratch baseline: no hyperparameters of its own."""

    name: str = "supervised"
