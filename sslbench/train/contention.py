"""How many CPU cores other processes kept busy while a run trained.

A wall-clock budget plans its steps from the time they take, and img/s is a speed; both are
measurements of the machine only when the run has it to itself. On Linux, ``/proc/stat`` counts
the CPU time of every process on the machine (user, nice, system, interrupts and the time a
hypervisor stole), and ``/proc/PID/stat`` that of each process. The run's own share is its process
tree: the process itself, or in a run of several workers the launcher that started them, with
every live descendant (data-loading workers, the other ranks) and the children already reaped
(``cutime``/``cstime``). The rest, per second of wall-clock, is ``others_cores``: 0 on an idle
machine, about 1 when another single-threaded job ran beside it the whole time.

It is recorded in the run's summary as ``others_cpu`` (rounded to 0.01 cores), printed when it
reaches ``SHARED_CORES``, and ``sslbench report`` shows the most any run of a row saw. Only this
node is seen (in a multi-node run, rank 0's); off Linux nothing is recorded.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

SHARED_CORES = 0.25  # other processes' load, in cores, from which a run is said to share the CPU
PROC = Path("/proc")


@dataclass(frozen=True)
class CpuSample:
    """The machine's busy CPU seconds and the run's process tree's, at one wall-clock time."""

    wall_s: float
    machine_s: float
    own_s: float


def sample(root: int | None = None, proc: Path = PROC) -> CpuSample | None:
    """Now's :class:`CpuSample` for the process tree under ``root`` (default: this process);
    None where ``/proc`` cannot be read."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        machine = _machine_busy_ticks(proc) / tick
        own = _tree_ticks(root if root is not None else os.getpid(), proc) / tick
    except (OSError, ValueError, IndexError):
        return None
    return CpuSample(time.monotonic(), machine, own)


def others_cores(start: CpuSample | None, end: CpuSample | None) -> float | None:
    """Cores that processes outside the run kept busy between two samples, on average."""
    if start is None or end is None or end.wall_s <= start.wall_s:
        return None
    others = (end.machine_s - start.machine_s) - (end.own_s - start.own_s)
    return max(0.0, others / (end.wall_s - start.wall_s))


def tree_root(world_size: int) -> int:
    """The process whose tree is the run: this one, or the launcher of its workers."""
    return os.getpid() if world_size == 1 else os.getppid()


def _machine_busy_ticks(proc: Path) -> int:
    # cpu  user nice system idle iowait irq softirq steal guest guest_nice (guest is in user)
    fields = (proc / "stat").read_text().split("\n", 1)[0].split()
    if fields[0] != "cpu":
        raise ValueError("unexpected /proc/stat")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return user + nice + system + irq + softirq + steal


def _tree_ticks(root: int, proc: Path) -> int:
    """utime + stime + cutime + cstime summed over ``root`` and its live descendants."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # the command name (field 2) is in parentheses and may hold spaces: split after it
        rest = text[text.rindex(")") + 2:].split()
        pid = int(entry.name)
        parents[pid] = int(rest[1])  # field 4: ppid
        ticks[pid] = sum(int(x) for x in rest[11:15])  # fields 14-17
    if root not in ticks:
        raise OSError(f"no process {root} in {proc}")
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total
