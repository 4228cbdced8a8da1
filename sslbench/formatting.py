"""Small text formatters shared by the CLI tables and the report exports (no heavy imports)."""

from __future__ import annotations


def format_duration(seconds: float | None) -> str:
    """`h:mm:ss`, or `-` for a run that never started."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
