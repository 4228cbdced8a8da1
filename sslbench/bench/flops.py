"""The model FLOP utilisation (MFU) that a training step's FLOPs (counted by
:mod:`sslbench.train.flops`) imply on a known GPU."""

from __future__ import annotations

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, for MFU on those GPUs.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "A6000": 154.8, "L40S": 362.0,
               "RTX 4090": 165.2}


def peak_tflops(device_name: str) -> float | None:
    """The bf16 peak of a known GPU named in ``device_name`` (e.g. 'NVIDIA H100 80GB HBM3')."""
    for gpu, tflops in sorted(PEAK_TFLOPS.items(), key=lambda kv: -len(kv[0])):
        if gpu in device_name:
            return tflops
    return None
