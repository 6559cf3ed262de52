"""A process's own peak resident memory. Not getrusage's ``ru_maxrss``: a process started by another (fork, then
exec) reports the larger of its parent's peak and its own there, so a small child of a large parent looked large."""
from __future__ import annotations

from pathlib import Path


def peak_resident_mb() -> float:
    """This process's peak resident memory since it started (``VmHWM``, reset by exec), in MB."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024
