#!/usr/bin/env bash
# The GPU checks of streamed data (docs/streaming.md), one script for a lent CUDA machine:
# nvJPEG (torchvision.io.decode_jpeg on CUDA) against the CPU workers' decoder on real shards,
# `bench throughput` of the streamed path (decoded on the device, then by 14 worker processes)
# against the in-memory one with the ImageNet-100 SimCLR recipe (ResNet-18, 224 px crops of 256 px
# images), and a streamed run end to end on CUDA (pretrain, mid-epoch checkpoints, evaluation).
# Meant to fit a few minutes of one H200 with 16 cores. Where that machine lacks the store's or the
# stream's packages, download their wheels into dist/whl first (pip download --no-deps
# --only-binary=:all: --python-version 3.12 ... SQLAlchemy alembic Mako optuna colorlog
# webdataset braceexpand) and carry dist/.
#   bash scripts/gpu_stream_check.sh [WORKDIR]
set -x
repo=$PWD work=${1:-/tmp/gpu_stream_check}
if compgen -G "dist/whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site dist/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 SSLBENCH_DB=$work/r.sqlite
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; nproc
python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)"
mkdir -p "$work" && cd "$work" || exit 1
[ -d images ] || python3 -c "import sys; sys.path.insert(0, '$repo/scripts')
from pathlib import Path; from stream_memory import fabricate
fabricate(Path('images'), 7000, 100, 256)" || exit 1
[ -d prepared ] || python3 -m sslbench data prepare images --out prepared --size 256 \
  --workers 14 --shard-size 500 || exit 1
python3 - prepared <<'PY'
import itertools, sys, time
from pathlib import Path
import numpy as np, torch
from sslbench.data.shards import Prepared, decode_many, read_manifest
from sslbench.data.stream import ShardBatches, decode_batch
root, cuda = Path(sys.argv[1]), torch.device("cuda")
m = read_manifest(root)
src = ShardBatches(Prepared(root, m), local_batch=4, world=1, device=cuda, shuffle_buffer=1000,
                   workers=0, decode_on_device=True)
payloads = [p for _, _, p in itertools.islice(src.samples(seed=1), 256)]
gpu = decode_batch(payloads, m, cuda).cpu().numpy().astype(np.int16)
cpu = decode_many(payloads, m.encoding, m.channels, m.size).astype(np.int16)
d = np.abs(gpu - cpu)
print(f"nvJPEG vs Pillow on {len(payloads)} images {gpu.shape[1:]}: max |diff| {d.max()}, "
      f"mean {d.mean():.3f}, pixels differing {np.mean(d > 0):.3f}")
for name, decode in (("nvJPEG", lambda p: decode_batch(p, m, cuda)),
                     ("Pillow, 1 process", lambda p: decode_many(p, m.encoding, m.channels, m.size))):
    decode(payloads); torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(3):
        decode(payloads)
    torch.cuda.synchronize()
    print(f"decode {name}: {3 * len(payloads) / (time.perf_counter() - t):.0f} img/s")
PY
recipe=$repo/recipes/imagenet100/simclr.yaml
for decode in device workers; do
  timeout 110 python3 -m sslbench bench throughput simclr --config "$recipe" --gpus 1 --steps 20 \
    --warmup 5 --rounds 2 --workers 0 --set data.prepared=prepared \
    --set data.decode=$decode --set data.workers=14
done
timeout 150 python3 -m sslbench pretrain simclr --config "$recipe" --gpus 1 --quiet \
  train.epochs=1 data.prepared=prepared data.memory_budget_gb=0.5 train.checkpoint_every=10 \
  eval.linear.epochs=2 "train.output_dir=$work/runs"
echo "pretrain: exit $?"
python3 -m sslbench runs list | head -8
