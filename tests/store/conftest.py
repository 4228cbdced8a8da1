"""Fixtures of the store tests: a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sslbench.store import Store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test's SQLite database goes (not created yet)."""
    return tmp_path / "runs.sqlite"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    """A new, migrated store."""
    with Store.open(str(db_path), create=True) as opened:
        yield opened
