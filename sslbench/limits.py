"""Limits shared by every layer, at the bottom of the layers (no imports)."""

MAX_ID = 2**63 - 1  # the largest run id (an SQL BIGINT, SQLite's INTEGER): bounds every id
