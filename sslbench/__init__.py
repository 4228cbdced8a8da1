"""sslbench: pretrain, evaluate, sweep and compare self-supervised representation learners."""

__version__ = "0.1.0"
