"""Leaderboard renderers: rich table (terminal), markdown, csv, json and self-contained html."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from sslbench.escape import for_csv, for_html, for_markdown, printable
from sslbench.formatting import format_duration
from sslbench.report.table import Group, Leaderboard

FORMATS = ("table", "markdown", "csv", "json", "html")


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def cell(group: Group, protocol: str) -> str:
    """``mean ± std (n)`` in percent, or the single value when there is one run."""
    stat = group.stats.get(protocol)
    if stat is None:
        return "-"
    if stat.std is None:
        return pct(stat.mean)
    return f"{pct(stat.mean)} ± {pct(stat.std)} (n={stat.n})"


def display_rows(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """Header and string cells shared by the table, markdown and html renderers."""
    header = ["method", "dataset", *board.group_by, "runs", "seeds"]
    for p in board.protocols:
        header += [f"{p} best", f"{p} mean ± std"]
    header += ["epochs", "batch", "backbone", "wall", "img/s", "collapsed"]
    rows = []
    for g in board.groups:
        row = [str(g.key["method"]), str(g.key["dataset"]),
               *[fmt_value(g.key[k]) for k in board.group_by], str(len(g.runs)), str(g.seeds)]
        for p in board.protocols:
            stat = g.stats.get(p)
            row += [pct(stat.best) if stat else "-", cell(g, p)]
        row += [
            g.common(lambda r: r.config.get("train", {}).get("epochs")),
            g.common(lambda r: r.config.get("train", {}).get("batch_size")),
            g.common(lambda r: r.backbone),
            format_duration(g.wall_s),
            "-" if g.img_per_s is None else f"{g.img_per_s:.0f}",
            "yes" if g.collapsed else "no",
        ]
        rows.append(row)
    return header, rows


def records(board: Leaderboard) -> list[dict[str, Any]]:
    """Machine-readable rows (fractions, not percent) for csv and json."""
    out = []
    for g in board.groups:
        rec: dict[str, Any] = {"method": g.key["method"], "dataset": g.key["dataset"]}
        rec.update({k: g.key[k] for k in board.group_by})
        rec.update({"runs": len(g.runs), "seeds": g.seeds,
                    "run_ids": [r.id for r in g.runs]})
        for p in board.protocols:
            stat = g.stats.get(p)
            rec[f"{p}_best"] = stat.best if stat else None
            rec[f"{p}_mean"] = stat.mean if stat else None
            rec[f"{p}_std"] = stat.std if stat else None
            rec[f"{p}_n"] = stat.n if stat else 0
        rec.update({
            "epochs": g.common(lambda r: r.config.get("train", {}).get("epochs")),
            "batch_size": g.common(lambda r: r.config.get("train", {}).get("batch_size")),
            "backbone": g.common(lambda r: r.backbone),
            "wall_s": g.wall_s, "img_per_s": g.img_per_s, "collapsed_runs": g.collapsed,
        })
        out.append(rec)
    return out


def to_markdown(board: Leaderboard) -> str:
    header, rows = display_rows(board)
    return markdown_table(header, rows, _text_columns(board))


def markdown_table(header: list[str], rows: list[list[str]], text_columns: int) -> str:
    """A GitHub markdown table; the first ``text_columns`` left-aligned, numbers right. Every
    cell is escaped (one line, no HTML, no Markdown syntax), so a stored value shows as
    written."""
    lines = ["| " + " | ".join(map(for_markdown, header)) + " |",
             "|" + "|".join("---" if i < text_columns else "---:"
                            for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(map(for_markdown, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(board: Leaderboard) -> str:
    return csv_text(records(board))


def csv_text(recs: list[dict[str, Any]]) -> str:
    """Records as CSV (lists joined by spaces, None empty); "" when there are none. A text cell
    that a spreadsheet would run as a formula (``=...``, ``+...``, ``-...``, ``@...``) gets a
    leading quote."""
    if not recs:
        return ""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    fields = list(recs[0])
    writer.writerow([for_csv(str(k)) for k in fields])
    for rec in recs:
        writer.writerow([_csv_cell(rec[k]) for k in fields])
    return buf.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list):
        value = " ".join(map(str, value))
    if value is None:
        return ""
    return for_csv(value) if isinstance(value, str) else value


def to_json(board: Leaderboard) -> str:
    return json.dumps({"protocols": board.protocols, "group_by": board.group_by,
                       "rows": records(board)}, indent=2) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}caption{font-weight:bold;margin-bottom:.5em}"""


def to_html(board: Leaderboard, title: str = "sslbench leaderboard") -> str:
    header, rows = display_rows(board)
    return html_page(title, [(title, header, rows)],
                     "Accuracies are test top-1 in %: best run, and mean ± sample std over runs.")


def html_page(title: str, tables: list[tuple[str, list[str], list[list[str]]]],
              note: str = "") -> str:
    """One self-contained HTML file (inline CSS, no scripts) with captioned tables."""
    parts = []
    for caption, header, rows in tables:
        head = "".join(f"<th>{for_html(h)}</th>" for h in header)
        body = "\n".join("<tr>" + "".join(f"<td>{for_html(c)}</td>" for c in row) + "</tr>"
                         for row in rows)
        parts.append(f"<table><caption>{for_html(caption)}</caption>\n<thead><tr>{head}"
                     f"</tr></thead>\n<tbody>\n{body}\n</tbody></table>\n")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{for_html(title)}"
            f"</title><style>{_CSS}</style></head><body>\n{''.join(parts)}"
            + (f"<p>{for_html(note)}</p>\n" if note else "") + "</body></html>\n")


def to_rich(board: Leaderboard) -> Any:
    header, rows = display_rows(board)
    return rich_table("leaderboard (test top-1 %)", header, rows, _text_columns(board))


def rich_table(title: str, header: list[str], rows: list[list[str]], text_columns: int) -> Any:
    """A rich table whose title, headers and cells are plain text (never parsed as markup,
    control characters shown as escapes)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(printable(title)), header_style="bold")
    for i, h in enumerate(header):
        table.add_column(Text(printable(h)), justify="left" if i < text_columns else "right")
    for row in rows:
        table.add_row(*(Text(printable(c)) for c in row))
    return table


def render(board: Leaderboard, fmt: str) -> str:
    if fmt == "markdown":
        return to_markdown(board)
    if fmt == "csv":
        return to_csv(board)
    if fmt == "json":
        return to_json(board)
    if fmt == "html":
        return to_html(board)
    raise ValueError(fmt)


def _text_columns(board: Leaderboard) -> int:
    """method, dataset and the group-by keys are left-aligned; numbers to the right."""
    return 2 + len(board.group_by)


def fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
