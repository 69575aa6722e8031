"""What the benchmarks share: how busy the whole machine was while they measured."""

from __future__ import annotations

import os
from pathlib import Path


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (Linux; 0 elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(field) for field in fields]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def live_descendants_cpu() -> float:
    """CPU seconds of this process's live descendants (worker processes kept between
    runs, not reaped yet, so not in ``RUSAGE_CHILDREN``); Linux, 0 elsewhere."""
    try:
        entries = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return 0.0
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in entries:
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])  # utime, stime
    found = [os.getpid()]
    for pid in found:
        found.extend(child for child, parent in parents.items() if parent == pid)
    return sum(ticks.get(pid, 0) for pid in found[1:]) / os.sysconf("SC_CLK_TCK")
