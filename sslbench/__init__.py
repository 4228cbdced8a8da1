"""sslbench: pretrain, evaluate, sweep and compare self-supervised representation learners.

The package root is the front door of the Python API (docs/python-api.md). Its functions are
imported on first use, so ``import sslbench.config`` and ``sslbench --help`` stay light and
torch-free::

    import sslbench
    encoder = sslbench.load_encoder(3)                      # run 3 of ./sslbench.sqlite
    encoder = sslbench.load_encoder("encoder.safetensors")  # a file `sslbench export` wrote
    features = encoder(images)                              # uint8 or [0, 1] floats, [N, C, H, W]

    from sslbench import results                            # runs, metrics, leaderboards
    frame = results.runs_frame(results.open_store("sslbench.sqlite"), method="byol")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sslbench.version import __version__

if TYPE_CHECKING:
    from sslbench.export import export_encoder, load_encoder

__all__ = ["__version__", "export_encoder", "load_encoder"]


def __getattr__(name: str) -> Any:
    if name in ("load_encoder", "export_encoder"):
        from sslbench import export

        return getattr(export, name)
    raise AttributeError(f"module 'sslbench' has no attribute {name!r}")
