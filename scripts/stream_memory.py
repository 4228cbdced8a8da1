"""Peak memory of pretraining from shards, streamed vs decoded into memory (docs/streaming.md).

Fabricates an image folder (smooth random colour fields, JPEG), prepares it once with
`sslbench data prepare`, then runs the same `sslbench pretrain` twice, with data.storage=stream
and data.storage=memory, each in a fresh process, and prints each one's peak resident memory
(the largest of the training process and its decoding workers) against the decoded size. It
measures pretraining (no evaluation, no kNN monitor): feature extraction runs the encoder on
batches of 1024 full-size images, whose activations on a CPU would outweigh the data::

    OMP_NUM_THREADS=1 nice -n 19 python scripts/stream_memory.py /tmp/streamrss --images 24000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def fabricate(root: Path, images: int, classes: int, size: int, seed: int = 0) -> None:
    """``root/{train,val}/class<k>/<i>.jpg``: one of 64 random low-frequency colour fields with
    noise, shifted by a per-class colour (JPEG sizes of natural-ish images, cheap to make);
    val gets a tenth."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    fields = []
    for _ in range(64):
        coarse = np.clip(rng.normal(128, 50, (6, 6, 3)), 0, 255).astype(np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((size, size),
                                                          Image.Resampling.BICUBIC), np.int16)
        fields.append(field + rng.normal(0, 8, field.shape).astype(np.int16))
    shifts = rng.integers(-60, 60, (classes, 1, 1, 3)).astype(np.int16)
    for split, count in (("train", images), ("val", max(classes, images // 10))):
        for i in range(count):
            label = i % classes
            folder = root / split / f"class{label:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.clip(fields[int(rng.integers(64))] + shifts[label], 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:07d}.jpg", quality=90)


def peak_rss_mib(argv: list[str]) -> tuple[float, float]:
    """Run ``argv`` in a fresh child; its peak RSS (MiB) and wall time (s)."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "subprocess.run(sys.argv[1:], check=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "
             "time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", probe, *argv], check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[-2]), float(out[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--images", type=int, default=24000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--budget-gb", type=float, default=1.0)
    args = parser.parse_args()
    folder, prepared = args.workdir / "images", args.workdir / "prepared"
    if not folder.exists():
        t = time.perf_counter()
        fabricate(folder, args.images, args.classes, args.size)
        print(f"fabricated {args.images} images in {time.perf_counter() - t:.0f} s")
    if not prepared.exists():
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sslbench", "data", "prepare", str(folder),
                        "--out", str(prepared), "--size", str(args.size), "--workers", "2"],
                       check=True)
        print(f"prepared in {time.perf_counter() - t:.0f} s")
    manifest = json.loads((prepared / "manifest.json").read_text())
    decoded = sum(s["count"] for s in manifest["splits"].values()) * 3 * args.size ** 2 / 2**20
    shards = sum(sh["bytes"] for s in manifest["splits"].values() for sh in s["shards"]) / 2**20
    print(f"decoded size {decoded:.0f} MiB, shards {shards:.0f} MiB on disk")
    print(f"this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    for storage in ("stream", "memory"):
        db = args.workdir / f"{storage}.sqlite"
        db.unlink(missing_ok=True)
        rss, seconds = peak_rss_mib([
            sys.executable, "-m", "sslbench", "pretrain", "simclr", "--gpus", "0", "--quiet",
            "--epochs", "1", "--db", str(db), "data.dataset=imagefolder",
            f"data.prepared={prepared}", f"data.storage={storage}",
            f"data.memory_budget_gb={args.budget_gb}", "model.backbone=convnet",
            "model.width=16", "augment.crop_size=32", "train.batch_size=128", "--eval", "none",
            "eval.knn.monitor_every=0",
            f"train.output_dir={args.workdir / 'runs'}"])
        print(f"data.storage={storage}: peak RSS {rss:.0f} MiB "
              f"({rss / decoded:.2f} × the decoded size), {seconds:.0f} s")


if __name__ == "__main__":
    main()
