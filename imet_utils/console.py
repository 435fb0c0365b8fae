"""Logging and progress bars that read well in a Kaggle log (no carriage-return spam)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def warn(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] WARNING: {message}", file=sys.stderr, flush=True)


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "") -> Iterable[T]:
    """A tqdm bar; off a terminal it redraws at most every 30 s, one line each time."""
    from tqdm.auto import tqdm

    tty = sys.stderr.isatty()
    return tqdm(items, total=total, desc=desc, mininterval=0.5 if tty else 30.0, ascii=not tty, file=sys.stderr)
