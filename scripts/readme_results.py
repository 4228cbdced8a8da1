"""Refresh the README's results section from results.sqlite.example (run from the repo root).

Writes the leaderboard and the sweep table between the README's `results` markers and the figures
into docs/results/, exactly as `sslbench report` prints them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DB = "results.sqlite.example"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def report(*args: str) -> str:
    cmd = [sys.executable, "-m", "sslbench", "report", "--db", DB, *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def main() -> None:
    board = report("-f", "markdown")
    sweep = report("--sweep", "byol-fm", "-f", "markdown")
    report("--plots", "docs/results")
    report("--sweep", "byol-fm", "--plots", "docs/results")
    block = (f"{BEGIN}\n`sslbench report --db {DB} -f markdown`:\n\n{board}\n"
             f"`sslbench report --db {DB} --sweep byol-fm -f markdown`:\n\n{sweep}\n"
             "![kNN top-1 per epoch](docs/results/curve_knn.png)\n"
             "![sweep: objective against each parameter](docs/results/sweep_params.png)\n"
             f"{END}")
    readme = Path("README.md")
    text = readme.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit("README.md has no results markers")
    readme.write_text(pattern.sub(lambda _: block, text))


if __name__ == "__main__":
    main()
