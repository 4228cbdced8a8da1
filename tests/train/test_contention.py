"""Other processes' CPU load during a run: read from a fabricated /proc, and measured for real
against a busy-looping process beside this one."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sslbench.train import contention
from sslbench.train.contention import CpuSample, others_cores, sample

TICK = os.sysconf("SC_CLK_TCK")


def _proc(root: Path, machine: int, processes: dict[int, tuple[int, int, str]]) -> Path:
    """A /proc with a `stat` line of ``machine`` busy ticks (split over its fields) and
    ``processes``: pid → (ppid, ticks, command name)."""
    root.mkdir(exist_ok=True)
    # user nice system idle iowait irq softirq steal guest guest_nice
    (root / "stat").write_text(f"cpu  {machine - 6} 1 2 999 5 1 1 1 7 0\ncpu0 1 2 3\n")
    for pid, (ppid, ticks, name) in processes.items():
        (root / str(pid)).mkdir(exist_ok=True)
        utime, stime, cutime, cstime = ticks - 3, 1, 1, 1
        fields = ["S", str(ppid), *["0"] * 9, str(utime), str(stime), str(cutime), str(cstime),
                  *["0"] * 30]
        (root / str(pid) / "stat").write_text(f"{pid} ({name}) {' '.join(fields)}\n")
    (root / "self").mkdir(exist_ok=True)  # not a pid: skipped
    return root


def test_the_run_is_its_process_tree(tmp_path: Path) -> None:
    # 10 → 11 → 12 is the run; 20 (its sibling under 1) and 1 are others
    procs = {1: (0, 50, "init"), 10: (1, 100, "python"), 11: (10, 30, "pt worker (1)"),
             12: (11, 20, "x) y"), 20: (1, 400, "other job")}
    got = sample(10, _proc(tmp_path / "a", 1_000, procs))
    assert got is not None
    assert got.own_s == pytest.approx(150 / TICK) and got.machine_s == pytest.approx(1_000 / TICK)
    assert sample(99, tmp_path / "a") is None  # not running: nothing to measure
    assert sample(10, tmp_path / "nothing") is None  # no /proc: nothing recorded


def test_others_cores_is_the_machine_less_the_run_per_second() -> None:
    start = CpuSample(wall_s=100.0, machine_s=50.0, own_s=20.0)
    end = CpuSample(wall_s=110.0, machine_s=80.0, own_s=40.0)  # 30 busy, 20 the run's
    assert others_cores(start, end) == pytest.approx(1.0)
    alone = CpuSample(wall_s=110.0, machine_s=69.5, own_s=40.0)  # rounding may go below 0
    assert others_cores(start, alone) == 0.0
    assert others_cores(start, None) is None and others_cores(start, start) is None


LINUX = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads Linux's /proc")
BUSY = "import time\nt = time.time()\nwhile time.time() - t < {s}: pass"


@LINUX
def test_a_busy_process_outside_the_run_counts_as_others() -> None:
    # A process that is not this one's descendant (its parent exits: it is reparented) loops;
    # whatever else runs on the machine, others' CPU includes all of its CPU time.
    launcher = subprocess.run(
        [sys.executable, "-c", "import subprocess, sys\n"
         f"p = subprocess.Popen([sys.executable, '-c', {BUSY.format(s=4)!r}], "
         "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\nprint(p.pid)"],
        capture_output=True, text=True, check=True)
    busy = int(launcher.stdout)
    try:
        time.sleep(0.2)
        before, busy_before = sample(), contention._tree_ticks(busy, contention.PROC) / TICK
        time.sleep(1.5)
        after, busy_after = sample(), contention._tree_ticks(busy, contention.PROC) / TICK
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(busy, 9)
    assert before is not None and after is not None
    others_s = (after.machine_s - before.machine_s) - (after.own_s - before.own_s)
    assert busy_after - busy_before > 0.2  # it ran
    assert others_s >= busy_after - busy_before - 0.05  # clock ticks: a few hundredths


@LINUX
def test_the_run_s_own_children_are_part_of_the_run() -> None:
    # a busy child of this process is part of the run (a data worker), live or reaped
    before = sample()
    child = subprocess.Popen([sys.executable, "-c", BUSY.format(s=1.0)])
    time.sleep(0.5)
    live = sample()
    child.wait()  # reaped: its time moves to this process's cutime
    after = sample()
    assert before is not None and live is not None and after is not None
    assert live.own_s - before.own_s > 0.1  # the live child's time is the run's
    assert after.own_s - before.own_s > 0.3  # still there once it is reaped
