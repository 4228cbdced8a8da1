"""Files that sslbench writes for the user: checksums, atomic writes and the checks of an output
path that make a bad `-o` / `--plots` one line instead of a traceback (no heavy imports)."""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path

from sslbench.errors import RunFailure, UserError

_HASH_CHUNK_BYTES = 1 << 20


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, read in chunks so checkpoints need not fit in memory."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        while chunk := file.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def os_reason(exc: OSError) -> str:
    """``No space left on device``: the OS's words for a failed file operation."""
    return exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def check_output_file(path: Path, flag: str) -> None:
    """Bad input for a file to write: its folder is missing, or it is a folder."""
    if path.is_dir():
        raise UserError(f"{flag} {str(path)!r} is a folder; pass a file name")
    if not path.parent.is_dir():
        raise UserError(f"{flag} {str(path)!r}: folder {str(path.parent)!r} does not exist")


def check_output_folder(path: Path, flag: str) -> None:
    """Bad input for a folder to write into: it is a file, or its parent is missing."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {str(path)!r} is a file; pass a folder")
    if not path.exists() and not path.parent.is_dir():
        raise UserError(f"{flag} {str(path)!r}: folder {str(path.parent)!r} does not exist")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: a regular file is replaced atomically (a
    temporary file beside it, then a rename), so a full disk leaves the old file as it was;
    anything else (``/dev/stdout``, a pipe) is written directly. A failure is a
    :class:`RunFailure` naming the file and the reason."""
    try:
        if path.exists() and not path.is_file():
            path.write_text(text)
            return
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as file:
                file.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise RunFailure(f"cannot write {str(path)!r}: {os_reason(exc)}") from None
