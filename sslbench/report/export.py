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
LEGEND = ("Top-1 in % on the test split (@val: on the validation split): the mean over a row's "
          "runs (one per seed) ± the half-width of its 95 % t interval. Rows are compared within "
          "a dataset and budget: 'best' has the highest mean, 'tied' rows have intervals that "
          "overlap the best's (disjoint intervals differ at p < 0.05 by Welch's t-test), 'n=1' "
          "rows have a single run and no interval. train: seconds of training steps; TFLOP: "
          "training FLOPs (FlopCounterMode).")


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def cell(group: Group, protocol: str) -> str:
    """``mean ± h (n=3)`` in percent, h the half-width of the 95 % interval of the mean; a
    single run says so (``85.06 (n=1)``) rather than showing ± 0."""
    stat = group.stats.get(protocol)
    if stat is None:
        return "-"
    interval = stat.interval
    if interval.half is None:
        return f"{pct(interval.mean)} (n=1)"
    return f"{pct(interval.mean)} ± {pct(interval.half)} (n={interval.n})"


def verdict(group: Group, protocol: str) -> str:
    """How the row compares with the best of its dataset and budget: best, tied (the 95 %
    intervals overlap), lower, or ``n=1`` when a single run on either side leaves no interval."""
    stat = group.stats.get(protocol)
    if stat is None:
        return "-"
    return stat.verdict or "n=1"


def method_cell(group: Group) -> str:
    """The method, and the sweep trial a row of confirmation runs re-ran."""
    sweep = group.key.get("sweep")
    return str(group.key["method"]) + (f" (sweep {sweep})" if sweep else "")


def group_scores(board: Leaderboard) -> list[str]:
    """One line per row: the method and each protocol's mean ± 95 % interval."""
    return [f"{method_cell(g)}: " + (", ".join(f"{p} {cell(g, p)}" for p in g.stats)
                                     or "no evaluation") for g in board.groups]


def tflop(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e12:.3g}"


def display_rows(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """Header and string cells shared by the table, markdown and html renderers."""
    header = ["method", "dataset", *board.group_by, "budget", "runs", "seeds"]
    for p in board.protocols:
        header += [f"{p} mean ± 95% CI", f"{p} vs best"]
    header += ["batch", "backbone", "train", "TFLOP", "wall", "img/s", "other CPU", "collapsed"]
    rows = []
    for g in board.groups:
        row = [method_cell(g), str(g.key["dataset"]),
               *[fmt_value(g.key[k]) for k in board.group_by], str(g.key["budget"]),
               str(len(g.runs)), str(g.seeds)]
        for p in board.protocols:
            row += [cell(g, p), verdict(g, p)]
        row += [
            g.common(lambda r: r.config.get("train", {}).get("batch_size")),
            g.common(lambda r: r.backbone),
            format_duration(g.train_s),
            tflop(g.train_flops),
            format_duration(g.wall_s),
            "-" if g.img_per_s is None else f"{g.img_per_s:.0f}",
            "-" if g.others_cpu is None else f"{g.others_cpu:.1f}",
            "yes" if g.collapsed else "no",
        ]
        rows.append(row)
    return header, rows


def records(board: Leaderboard) -> list[dict[str, Any]]:
    """Machine-readable rows (fractions, not percent) for csv and json."""
    out = []
    for g in board.groups:
        rec: dict[str, Any] = {"method": g.key["method"], "dataset": g.key["dataset"],
                               "budget": g.key["budget"], "sweep": g.key["sweep"]}
        rec.update({k: g.key[k] for k in board.group_by})
        rec.update({"runs": len(g.runs), "seeds": g.seeds,
                    "run_ids": [r.id for r in g.runs]})
        for p in board.protocols:
            stat = g.stats.get(p)
            interval = stat.interval if stat else None
            rec[f"{p}_mean"] = stat.mean if stat else None
            rec[f"{p}_ci95"] = interval.half if interval else None
            rec[f"{p}_low"] = interval.low if interval else None
            rec[f"{p}_high"] = interval.high if interval else None
            rec[f"{p}_n"] = stat.n if stat else 0
            rec[f"{p}_std"] = stat.std if stat else None
            rec[f"{p}_best"] = stat.best if stat else None
            rec[f"{p}_vs_best"] = stat.verdict if stat else None
            rec[f"{p}_welch_p"] = stat.p_vs_best if stat else None
        rec.update({
            "epochs": g.common(lambda r: r.config.get("train", {}).get("epochs")),
            "batch_size": g.common(lambda r: r.config.get("train", {}).get("batch_size")),
            "backbone": g.common(lambda r: r.backbone),
            "train_s": g.train_s, "train_flops": g.train_flops,
            "wall_s": g.wall_s, "img_per_s": g.img_per_s, "others_cpu_max": g.others_cpu,
            "collapsed_runs": g.collapsed,
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
    return html_page(title, [(title, header, rows)], LEGEND)


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


def to_rich(board: Leaderboard,
            title: str = "leaderboard (top-1 % on the test split; @val: on the validation split)"
            ) -> Any:
    header, rows = display_rows(board)
    return rich_table(title, header, rows, _text_columns(board))


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
    """method, dataset, the group-by keys and the budget are left-aligned; numbers right."""
    return 3 + len(board.group_by)


def fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
