"""``kaggle quota``: the weekly GPU hours left, read before a plan is pushed.

The 2.2.5 CLI prints, with ``-v``, ``resource,used,remaining,total,refreshAt`` and one row per accelerator
(``GPU,2.50h,27.50h,30.00h,2026-12-12T00:00:00+00:00``). A plan that needs more GPU hours than remain before
the refresh is refused unless ``--force``.
"""

from __future__ import annotations

import csv
import dataclasses
import io

from kernel_build.kaggle_cli import KaggleCli
from kernel_build.kernel import BuildError


@dataclasses.dataclass(frozen=True)
class Quota:
    used_h: float
    remaining_h: float
    total_h: float
    refresh_at: str

    def line(self) -> str:
        return (
            f"GPU quota: {self.remaining_h:.1f} h left of {self.total_h:.0f} h this week "
            f"(refreshes {self.refresh_at or 'at an unknown time'})"
        )


def parse_quota(text: str) -> Quota | None:
    """The GPU row of ``kaggle quota -v``'s CSV, or None if it has none."""
    lines = [line for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.lower().startswith("resource,")), None)
    if start is None:
        return None
    for row in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        if row.get("resource", "").upper() == "GPU":
            used, remaining, total = (_hours(row.get(key)) for key in ("used", "remaining", "total"))
            return Quota(used, remaining, total, row.get("refreshAt", ""))
    return None


def _hours(text: str | None) -> float:
    """``27.50h`` -> 27.5."""
    try:
        return float(str(text or "0").strip().rstrip("h"))
    except ValueError:
        return 0.0


def read_quota(cli: KaggleCli) -> Quota | None:
    """The account's GPU quota now; None (with a warning) where the CLI can't tell."""
    answer = cli.call("quota", "-v")
    quota = parse_quota(answer.out) if answer.kind == "ok" else None
    if quota is None:
        print(f"warning: kaggle quota gave no GPU figure ({answer.why()}); the plan is not checked against it")
    return quota


def check_quota(quota: Quota | None, need_h: float, *, force: bool, refuse: bool = True) -> list[str]:
    """Lines to print; with ``refuse``, raises when ``need_h`` GPU hours exceed what is left (unless ``force``).
    ``plan`` passes ``refuse=False``: it warns, and the push refuses."""
    if quota is None:
        return []
    lines = [f"  {quota.line()}; this plan needs {need_h:.1f} h"]
    if need_h > quota.remaining_h:
        short = (
            f"the plan needs {need_h:.1f} GPU hours but {quota.remaining_h:.1f} h are left before the refresh "
            f"({quota.refresh_at}): train fewer folds or epochs, or wait for the refresh"
        )
        if refuse and not force:
            raise BuildError(short + "; --force pushes anyway")
        lines.append(f"  warning: {short}" + (" (pushed anyway: --force)" if refuse else ""))
    return lines
