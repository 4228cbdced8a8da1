"""sslbench: pretrain, evaluate, sweep and compare self-supervised representation learners."""

__version__ = "0.1.0"
MAX_ID = 2**63 - 1  # the largest run id (an SQL BIGINT, SQLite's INTEGER): bounds every id
