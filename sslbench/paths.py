"""Folders the user names for sslbench to write into, checked before anything is written."""

from __future__ import annotations

import os
from pathlib import Path

from sslbench.errors import UserError


def writable_folder(path: Path, what: str, hint: str) -> Path:
    """``path`` created if it is missing and writable; else a one-line UserError naming it as
    ``what`` and ending with ``hint`` (how to fix it)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {what} {str(path)!r} ({exc.strerror}); {hint}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{what} {str(path)!r} is not writable; {hint}")
    return path
