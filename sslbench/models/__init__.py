"""Backbones, projector/predictor heads and the EMA helper."""

from sslbench.models.backbones import build_backbone
from sslbench.models.ema import cosine_ema_decay, ema_update
from sslbench.models.heads import MLP

__all__ = ["MLP", "build_backbone", "cosine_ema_decay", "ema_update"]
