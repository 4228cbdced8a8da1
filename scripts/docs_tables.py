"""Refresh the generated tables of the documentation.

Writes, from what `sslbench methods --markdown` and `sslbench report` print:

- the methods table between the `methods` markers of README.md, from the method registry;
- a compact leaderboard (means, intervals, ties) between the `results` markers of README.md;
- the full leaderboard, the sweep table, its parameter importance and the figures between the
  `results` markers of docs/results.md, and the figures themselves into docs/results/.

The reports read a temporary copy of the database, so results.sqlite.example is never written.
Usage, from anywhere: `python scripts/docs_tables.py` (the checkout's sslbench is used);
`--db OTHER.sqlite --print` renders another database's blocks to stdout (figures into a
temporary folder) and writes nothing into the checkout.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB = "results.sqlite.example"
STUDY = "byol-fm"
FIGURES = "docs/results"


def sslbench(*args: str) -> str:
    """stdout of `sslbench ARGS`, run from the checkout's root."""
    cmd = [sys.executable, "-m", "sslbench", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout


def report(db: Path, *args: str) -> str:
    """stdout of `sslbench report --db DB ARGS`."""
    return sslbench("report", "--db", str(db), *args)


def methods_block() -> str:
    return ("`sslbench methods --markdown`:\n\n" + sslbench("methods", "--markdown").strip())


def command(*args: str) -> str:
    """The command as a reader would type it, quoted for Markdown."""
    return "`" + " ".join(["sslbench report --db", DB, *args]) + "`"


def readme_block(db: Path) -> str:
    """The README's compact leaderboard: the columns of `report -f json` that rank the methods
    (the full table is in docs/results.md)."""
    data = json.loads(report(db, "-f", "json"))
    protocols = data["protocols"]
    head = ["method", *[f"{p} top-1 | {p} vs best" for p in protocols]]
    lines = ["| " + " | ".join(head) + " |",
             "|---|" + "---:|---:|" * len(protocols)]
    for row in data["rows"]:
        name = row["method"].replace("_", "\\_")
        if row["sweep"]:
            name += f" (sweep {row['sweep']}, confirmed)"
        cells = [name]
        for p in protocols:
            n = row.get(f"{p}_n") or 0
            mean, half = row.get(f"{p}_mean"), row.get(f"{p}_ci95")
            if mean is None:
                cells += ["–", "–"]
                continue
            interval = (f"{100 * mean:.2f} ± {100 * half:.2f} (n={n})" if n > 1 and half is not None
                        else f"{100 * mean:.2f} (one run)")
            cells += [interval, row.get(f"{p}_vs_best") or ""]
        lines.append("| " + " | ".join(cells) + " |")
    return (f"{contents(db)}\n\nTop-1 in % on the test split, mean ± half-width of the 95 % "
            f"interval over the seeds, from {command('-f', 'json')}:\n\n" + "\n".join(lines)
            + "\n\n`vs best`: the row with the highest mean is `best`; `tied` rows have intervals "
            "that overlap the best's (disjoint intervals differ at p < 0.05 by Welch's t-test). "
            "The full table, the sweep and the figures: [docs/results.md](docs/results.md).")


def contents(db: Path) -> str:
    """What the database holds, read from it: methods, budgets, seeds."""
    rows = json.loads(report(db, "-f", "json"))["rows"]
    plain = [r for r in rows if not r["sweep"]]
    budgets = sorted({r["budget"] for r in plain})
    seeds = sorted({r["seeds"] for r in plain})
    return (f"`{DB}`: {len(plain)} methods on {', '.join(sorted({r['dataset'] for r in rows}))}"
            f" at a budget of {' / '.join(budgets)} of training each, "
            f"{' / '.join(map(str, seeds))} seed{'s' if max(seeds) > 1 else ''} per method, "
            "every run evaluated by a linear "
            "probe and a kNN on the test split"
            + ("; the BYOL sweep's best trial, chosen on the validation split, confirmed with "
               "fresh seeds in its own row" if len(plain) < len(rows) else "") + ".")


def results_block(db: Path, figures: Path) -> str:
    board = report(db, "-f", "markdown").strip()
    sweep = report(db, "--sweep", STUDY, "-f", "markdown").strip()
    report(db, "--plots", str(figures))
    report(db, "--sweep", STUDY, "--plots", str(figures))
    return "\n".join([
        f"{command('-f', 'markdown')}:",
        "",
        board,
        "",
        f"{command('--sweep', STUDY, '-f', 'markdown')}:",
        "",
        sweep,
        "",
        f"{command('--plots', FIGURES)}:",
        "",
        "![mean test top-1 by method and protocol](results/accuracy_by_method.png)",
        "![pretraining loss per epoch](results/curve_loss.png)",
        "![online kNN top-1 per epoch](results/curve_knn.png)",
        "![per-channel std of the backbone's output per epoch](results/curve_collapse.png)",
        "",
        f"{command('--sweep', STUDY, '--plots', FIGURES)}:",
        "",
        "![sweep: objective against each parameter](results/sweep_params.png)",
        "![sweep: parameter importance](results/sweep_importance.png)",
    ])


def replace_block(path: Path, name: str, block: str) -> None:
    """Put `block` between the `name` markers of `path` (which must hold them once)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text()
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if len(pattern.findall(text)) != 1:
        raise SystemExit(f"{path.relative_to(ROOT)} must hold the {name} markers exactly once")
    path.write_text(pattern.sub(lambda _: f"{begin}\n{block}\n{end}", text))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Refresh the generated tables of the docs.")
    parser.add_argument("--db", type=Path, default=ROOT / DB,
                        help=f"the results database to render (default: {DB}); a temporary "
                             "copy is read")
    parser.add_argument("--print", dest="dry_run", action="store_true",
                        help="print the blocks instead of writing README.md, docs/results.md "
                             "and the figures")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "results.sqlite"
        shutil.copyfile(args.db, db)
        figures = Path(tmp) / "figures" if args.dry_run else ROOT / FIGURES
        readme, results = readme_block(db), results_block(db, figures)
        if args.dry_run:
            print(f"{readme}\n\n{results}\n\nfigures: "
                  + ", ".join(sorted(f.name for f in figures.iterdir())))
            return
    replace_block(ROOT / "README.md", "methods", methods_block())
    replace_block(ROOT / "README.md", "results", readme)
    replace_block(ROOT / "docs" / "results.md", "results", results)


if __name__ == "__main__":
    main()
