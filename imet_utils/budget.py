"""The session's clock: a time budget counted from the kernel's start, and per-stage timings.

Kaggle's session limit runs from the session's start, not from the first epoch: the pip install, the
CSV checks and the image cache (20+ minutes on the real data) all count. So the budget starts when the
kernel's process started, and each stage logs what it took (``stage <name>: <seconds> s``).
"""

from __future__ import annotations

import os
import time

from imet_utils.console import log

EXPORT_SECONDS_GUESS = 120.0  # time kept in hand for exporting a fold's model


def process_start_time() -> float:
    """Wall-clock time at which this process started (Linux ``/proc``); now, where that can't be read."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        started_ago = uptime - int(fields[19]) / ticks  # field 22 of stat: start time after boot
        return time.time() - max(0.0, started_ago)
    except (OSError, ValueError, IndexError):
        return time.time()


class Budget:
    """The session's time budget: decides whether another epoch or fold can still finish.

    Args:
        hours: the budget.
        start: when it started (default: now). Kernels pass ``process_start_time()``.
    """

    def __init__(self, hours: float, start: float | None = None):
        self.start = time.time() if start is None else start
        self.deadline = self.start + hours * 3600.0

    @classmethod
    def from_process_start(cls, hours: float) -> Budget:
        return cls(hours, start=process_start_time())

    def elapsed(self) -> float:
        return time.time() - self.start

    def left(self) -> float:
        return self.deadline - time.time()

    def fits(self, seconds: float) -> bool:
        return self.left() > seconds + EXPORT_SECONDS_GUESS


class Stages:
    """Logs the wall time of each named stage of a kernel, as ``stage <name>: <seconds> s``."""

    def __init__(self, budget: Budget):
        self.budget = budget
        self.last = budget.start  # the first stage counts from the kernel's start
        self.seconds: dict[str, float] = {}
        log(f"kernel started {budget.elapsed():.0f} s ago; {budget.left() / 3600:.2f} h of budget left")

    def done(self, name: str) -> float:
        """Ends stage ``name`` (it began when the previous stage ended) and logs its time."""
        now = time.time()
        seconds = now - self.last
        self.last = now
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        log(
            f"stage {name}: {seconds:.1f} s (kernel at {self.budget.elapsed() / 60:.1f} min, "
            f"{self.budget.left() / 3600:.2f} h left)"
        )
        return seconds
