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
