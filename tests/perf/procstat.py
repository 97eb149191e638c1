"""CPU time and memory of the stack's processes, read from /proc (Linux).

A "process" of the stack is its process group: `devservices.spawn` starts each one in its own
session, so whatever it forks (several ingress processes sharing a port, say) is counted too.
"""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def group_pids(leader: int) -> list[int]:
    """Every live process in the process group `leader` leads (itself included)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(int(entry.name))[2]) == leader:  # field 5: pgrp
                    pids.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    return pids or [leader]


def cpu_seconds(leaders: list[int]) -> float:
    """User + system CPU time used so far by these process groups (utime + stime)."""
    total = 0
    for leader in leaders:
        for pid in group_pids(leader):
            try:
                fields = _stat_fields(pid)
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return total / CLK_TCK


def rss_mb(leaders: list[int], key: str = "VmRSS") -> float:
    """Resident memory of these process groups in MiB (`VmHWM` for the peak)."""
    kb = 0
    for leader in leaders:
        for pid in group_pids(leader):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            kb += next((int(ln.split()[1]) for ln in status.splitlines() if ln.startswith(key)), 0)
    return kb / 1024
