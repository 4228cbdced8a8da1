"""The per-epoch monitor of a pretraining run: diagnostics on a fixed held-out batch and an
online kNN accuracy, recorded with the epoch's metrics; a collapse is flagged (or stops the run).

Both are choices (a sweep prunes on the kNN accuracy, a collapse can stop the run), so both read
the validation split only (:mod:`sslbench.data.splits`): the test split is not in what they see.
"""

from __future__ import annotations

import torch
from torch import nn

from sslbench.data.augment import pretraining_augment
from sslbench.data.splits import run_validation_split
from sslbench.errors import RunFailure
from sslbench.eval.diagnostics import Diagnostics, collapsed_outputs
from sslbench.eval.features import extract_features
from sslbench.eval.knn import knn_classify
from sslbench.eval.layers import feature_module
from sslbench.mi.entropy import BANDWIDTH_RULES
from sslbench.run.lifecycle import RunContext
from sslbench.seeds import Stream, stream_seed


class EpochMonitor:
    """After each pretraining epoch: diagnostics on a fixed held-out batch and an online kNN.

    The kNN top-1 (``val_knn_top1``: ``monitor_train_size`` images of train minus val as
    neighbours, the validation split as queries) is the cheap signal a sweep prunes on. The
    diagnostics batch is the first ``eval.diagnostics.batch_size`` validation images. A collapse
    (see ``collapsed_outputs``) is flagged in the run's summary and warned about; with
    ``stop_on_collapse`` it ends the run (FAILED).
    """

    def __init__(self, ctx: RunContext, method: nn.Module) -> None:
        self.ctx, self.method = ctx, method
        self.flagged = False
        cfg, data = ctx.cfg, ctx.dataset
        info = data.info
        split = run_validation_split(data, cfg.data)
        # indexed from the train split only: the test split is not in what the monitor sees
        self.val_images, self.val_labels = (data.train_images[split.val],
                                            data.train_labels[split.val])
        gen = torch.Generator().manual_seed(stream_seed(cfg.train.seed, Stream.KNN_MONITOR))
        order = torch.randperm(split.fit.shape[0], generator=gen)
        neighbours = split.fit[order[:cfg.eval.knn.monitor_train_size]]  # of train − val
        self.knn_images, self.knn_labels = (data.train_images[neighbours],
                                            data.train_labels[neighbours])
        diag = cfg.eval.diagnostics
        self.diagnostics: Diagnostics | None = None
        if diag.enabled:
            augment = pretraining_augment(cfg.augment, info)  # the views training sees
            held_out = self.val_images[:diag.batch_size]
            self.diagnostics = Diagnostics.from_images(
                held_out, augment, ctx.device,
                seed=stream_seed(cfg.train.seed, Stream.DIAGNOSTICS),
                temperature=diag.temperature, kde_kernel=diag.kde_kernel,
                kde_bandwidth=_bandwidth(diag.kde_bandwidth), er_kappa=diag.er_kappa)

    def __call__(self, epoch: int) -> dict[str, float]:
        """The metrics of this epoch; raises RunFailure on collapse if asked to stop."""
        metrics: dict[str, float] = {}
        knn = self.ctx.cfg.eval.knn
        if knn.monitor_every and epoch % knn.monitor_every == 0:
            metrics["val_knn_top1"] = self._online_knn()
        if self.diagnostics is not None:
            metrics |= self.diagnostics.measure(self.method)
            self._check_collapse(epoch, metrics)
        return metrics

    def _online_knn(self) -> float:
        knn, device, info = self.ctx.cfg.eval.knn, self.ctx.device, self.ctx.dataset.info
        module = feature_module(self.method, knn.layer)
        train_x = extract_features(module, self.knn_images, info.mean, info.std, device)
        val_x = extract_features(module, self.val_images, info.mean, info.std, device)
        return knn_classify(train_x, self.knn_labels, val_x, self.val_labels, info.num_classes,
                            knn.k, knn.temperature)["top1"]

    def _check_collapse(self, epoch: int, metrics: dict[str, float]) -> None:
        assert self.diagnostics is not None
        diag = self.ctx.cfg.eval.diagnostics
        bad = collapsed_outputs(metrics, self.diagnostics.dims, diag.collapse_ratio)
        metrics["collapsed"] = float(bool(bad))
        if not bad:
            return
        reason = f"representation collapse at epoch {epoch}: {'; '.join(bad)}"
        if not self.flagged:
            self.flagged = True
            self.ctx.store.update_summary(self.ctx.run_id, collapsed=1.0, collapse_epoch=epoch)
            self.ctx.echo(f"run {self.ctx.run_id}: warning: {reason}")
        if diag.stop_on_collapse:
            raise RunFailure(reason + " (--stop-on-collapse)")


def _bandwidth(value: str) -> str | float:
    """A bandwidth key as the estimator takes it: a rule name or a number (validated already)."""
    return value if value in BANDWIDTH_RULES else float(value)
