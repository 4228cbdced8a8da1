"""Reproductions of the seed papers' claims, each one command: ``sslbench reproduce NAME``.

A reproduction is one run of kind ``reproduce`` in the store (its settings as config, its points as
metrics, its figure as an artifact); the pretraining runs it starts are its children (with their
own linear probes as grandchildren), so ``sslbench runs show ID`` tells the whole story.

The SimSiam and batch-size reproductions are sized for a CPU (a random subset of the dataset,
``--train-size`` / ``--test-size``, and a few epochs); Tschannen et al.'s follow the authors'
protocol (full splits, 21 000 steps, ``--seeds`` seeds; ``--quick`` for a smoke run) and are
resumable: the same command again skips the runs that finished and continues the others from
their checkpoints (:mod:`sslbench.reproduce.protocol`). The Gaussian ones need no data. Names and
what they show:

- ``simsiam-collapse``: SimSiam with and without the stop-gradient (Chen & He 2021, Fig. 2);
- ``infonce-ceiling``: the InfoNCE estimate never exceeds log K (batch K = 16 … 512);
- ``critics``: Tschannen et al. 2020, sec. 3.2: bilinear / separable vs MLP critic, probe vs bound;
- ``gaussian-bounds``: InfoNCE saturates at log K, NWJ's variance and DV's bias grow with MI;
- ``batch-size``: linear accuracy vs batch size, SimCLR vs BYOL / Barlow Twins / VICReg.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslbench.errors import UserError

Echo = Callable[[str], None]
SUBSET_SIZES = (10_000, 2_000)  # train, test images of the subset reproductions by default

# name → (module, one-line description); modules are imported on demand (they import torch)
REPRODUCTIONS: dict[str, tuple[str, str]] = {
    "simsiam-collapse": ("sslbench.reproduce.training",
                         "SimSiam with vs without stop-gradient: output std and accuracy"),
    "infonce-ceiling": ("sslbench.reproduce.gaussian",
                        "InfoNCE estimate vs log K for batch sizes 16 to 512"),
    "critics": ("sslbench.reproduce.tschannen",
                "Tschannen et al. sec. 3.2: bilinear/separable vs MLP critic, InfoNCE and NWJ"),
    "bijective": ("sslbench.reproduce.tschannen",
                  "Tschannen et al. sec. 3.1: RealNVP encoders, MI fixed, the probe moves"),
    "adversarial": ("sslbench.reproduce.tschannen",
                    "Tschannen et al. sec. 3.1: an invertible encoder trained to defeat a probe"),
    "skip-mlp": ("sslbench.reproduce.tschannen",
                 "Tschannen et al. sec. 3.1: the Jacobian of an identity-initialised MLP"),
    "mi-target": ("sslbench.reproduce.tschannen",
                  "Tschannen et al. sec. 3.3: ConvNet vs MLP trained to an estimate t"),
    "gaussian-bounds": ("sslbench.reproduce.gaussian",
                        "InfoNCE/NWJ/DV on Gaussians with known MI swept upward"),
    "negative-sampling": ("sslbench.reproduce.gaussian",
                          "Tschannen et al. sec. 4: bounds above the true MI without iid pairs"),
    "batch-size": ("sslbench.reproduce.training",
                   "linear accuracy vs batch size: SimCLR vs BYOL, Barlow Twins, VICReg"),
}


@dataclass
class ReproSettings:
    """What the command line chooses; each reproduction reads what it needs."""

    db: str | None = None
    out_dir: str = "reproductions"  # the PNG goes here
    # Tschannen et al.'s: the root of the runs' folders (<uid>/); None: beside the database
    output_dir: str | None = None
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    train_size: int | None = None  # None: the reproduction's own (a subset, or the full split)
    test_size: int | None = None
    epochs: int | None = None  # None: the reproduction's own
    batch_sizes: list[int] = field(default_factory=lambda: [16, 64, 256, 512])
    seed: int = 0  # the first seed
    seeds: int = 3  # Tschannen et al.'s: seeds seed, seed + 1, ... (the paper: 20 runs)
    steps: int | None = None  # None: the paper's (21 000 for most)
    eval_every: int | None = None  # None: the paper's (1 000)
    quick: bool = False  # a smoke run: few steps, few images
    mi_targets: list[float] = field(default_factory=lambda: [2.0, 4.0])
    overrides: list[str] = field(default_factory=list)  # infomax keys for every run of a cell grid
    gpus: int | None = None
    jobs: int = 1  # Tschannen et al.'s grids: runs at once, each in its own process


def check_name(name: str) -> None:
    if name not in REPRODUCTIONS:
        raise UserError(f"unknown reproduction {name!r}: choose one of "
                        f"{', '.join(REPRODUCTIONS)}")


def check_settings(name: str, s: ReproSettings) -> None:
    """Bad sizes are bad input: one line, nothing written."""
    for key, value in (("--train-size", s.train_size), ("--test-size", s.test_size)):
        if value is not None and value < 2:
            raise UserError(f"{key}={value} must be at least 2")
    for key, value in (("--epochs", s.epochs), ("--steps", s.steps),
                       ("--eval-every", s.eval_every), ("--seeds", s.seeds),
                       ("--jobs", s.jobs)):
        if value is not None and value < 1:
            raise UserError(f"{key}={value} must be at least 1")
    if s.steps is not None and s.eval_every is not None and s.steps % s.eval_every:
        raise UserError(f"--steps={s.steps} must be a multiple of --eval-every={s.eval_every}")
    if not s.batch_sizes or any(b < 2 for b in s.batch_sizes):
        raise UserError("--batch-sizes must be a comma list of sizes of at least 2")
    if name == "batch-size" and any(b > (s.train_size or SUBSET_SIZES[0]) for b in s.batch_sizes):
        raise UserError(f"--batch-sizes {max(s.batch_sizes)} is larger than --train-size "
                        f"{s.train_size}")


def run_reproduction(name: str, settings: ReproSettings, echo: Echo = print) -> int:
    """Run reproduction ``name``; the id of its ``reproduce`` run in the store."""
    import importlib

    from sslbench.store.db import check_writable, resolve_db_url

    check_name(name)
    check_settings(name, settings)
    check_writable(resolve_db_url(settings.db))  # before minutes of training, not after
    module: Any = importlib.import_module(REPRODUCTIONS[name][0])
    out = Path(settings.out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {str(out)!r} ({exc.strerror})") from None
    run_id: int = module.RUNNERS[name](settings, echo)
    return run_id
