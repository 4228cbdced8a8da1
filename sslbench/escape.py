"""Stored values made safe for where they are shown, and secrets kept out of every message.

Anything a user or a file put into the database (a method name, a config value, a failure
reason) may hold text that means something to the place it is rendered in: terminal escape
sequences and rich markup, spreadsheet formulas, Markdown and HTML, matplotlib's mathtext. Each
function here escapes for one target, so the text is shown as written and does nothing else.
No heavy imports.
"""

from __future__ import annotations

import html
import re

# C0 controls but tab, DEL, C1 controls (ESC starts terminal sequences, CSI is U+009B), and the
# Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^@\s]+(?=@)")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r", "\n")


def printable(text: str, *, lines: bool = False) -> str:
    r"""One line, every control character visible as its escape (``\x1b``, ``\n``); with
    ``lines``, the line breaks of a multi-line text are kept."""
    if lines:
        return "\n".join(printable(line) for line in text.split("\n"))
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def for_terminal(text: str) -> str:
    """Text for a terminal or a rich table: :func:`printable`, and rich markup as literal text
    (``[bold]`` shows as ``[bold]``)."""
    from rich.markup import escape

    return escape(printable(text))


def for_csv(value: str) -> str:
    """A CSV cell a spreadsheet never runs as a formula (OWASP: a leading quote)."""
    return "'" + value if value.startswith(_CSV_FORMULA) else value


def for_markdown(text: str) -> str:
    """A Markdown table cell: one line, HTML as entities, Markdown syntax backslash-escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(printable(text), quote=False))


def for_html(text: str) -> str:
    """HTML text: control characters made visible, then ``< > & " '`` as entities."""
    return html.escape(printable(text))


def for_mathtext(text: str) -> str:
    """A matplotlib label shown as written: a ``$`` never starts mathtext."""
    return printable(text).replace("$", r"\$")


def redact(text: str) -> str:
    """``postgresql://user:secret@host`` → ``postgresql://user:***@host`` anywhere in ``text``."""
    return _URL_PASSWORD.sub(r"\g<head>***", text)
