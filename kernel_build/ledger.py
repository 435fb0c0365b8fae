"""The run ledger: ``runs/ledger.json``, what this repo has asked of Kaggle, kept on disk so any stop resumes.

The kaggle CLI can't say which version a status is about, nor which folds are still to push. So every fact the
orchestrator learns goes here the moment it learns it:

- ``plan``: the kernels of the last push command, their waves, and each built kernel's content hash;
- ``kernels``: per kernel, its pushes: version, content hash, time, whether the run was seen queued or running,
  its final status, and its end marker (``run_status.json``) with the verdict drawn from it;
- ``submissions``: each submission's ref, recorded as soon as the CLI prints it, then its scores.

Writes are atomic (a temporary file renamed over the old one) and made under a file lock, each re-reading the
file first, so two terminals never clobber each other. A command that drives kernels (push, wait, submit)
also holds the driver lock for its whole run: a second one is refused with the first one's pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from kernel_build.kernel import BuildError

LEDGER_FILE = "ledger.json"
OLD_PUSHES_FILE = "pushes.json"  # what earlier releases kept: imported once


def _empty() -> dict:
    return {"plan": {}, "kernels": {}, "submissions": []}


class Ledger:
    """``runs/ledger.json``: read at will, changed only inside ``with ledger.change() as data:``.

    Args:
        runs_dir: the folder that holds it (and the pulled outputs).
    """

    def __init__(self, runs_dir: Path):
        self.dir = Path(runs_dir)
        self.path = self.dir / LEDGER_FILE
        self._driver = None

    # -- reading -----------------------------------------------------------------------------------------------
    def read(self) -> dict:
        """The ledger as it is on disk now (an empty one if there is none yet)."""
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except ValueError as e:
                raise BuildError(f"{self.path} is not valid JSON ({e}): fix or remove it") from None
            return {**_empty(), **data}
        old = self.dir / OLD_PUSHES_FILE
        data = _empty()
        if old.is_file():  # pushes.json of an earlier release: one push per kernel
            for kid, rec in json.loads(old.read_text()).items():
                data["kernels"][kid] = {"pushes": [{**rec, "hash": None, "final": None, "verdict": None}]}
        return data

    def pushes(self, kid: str) -> list[dict]:
        return self.read()["kernels"].get(kid, {}).get("pushes", [])

    def latest(self, kid: str) -> dict | None:
        """The latest push of ``kid`` recorded here, or None."""
        pushes = self.pushes(kid)
        return pushes[-1] if pushes else None

    # -- writing -----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def change(self) -> Iterator[dict]:
        """Locks, re-reads, yields the data to change, and writes it back atomically."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".ledger.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self.read()
            yield data
            tmp = self.path.with_name(f".{LEDGER_FILE}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, self.path)

    def record_push(
        self,
        kid: str,
        *,
        version: int,
        content_hash: str,
        gpu: bool,
        status_before: str | None,
        inputs: dict[str, int] | None = None,
    ) -> None:
        with self.change() as data:
            entry = data["kernels"].setdefault(kid, {"pushes": []})
            entry["pushes"].append(
                {
                    "version": version,
                    "hash": content_hash,
                    "pushed_at": time.time(),
                    "gpu": gpu,
                    "status_before": status_before,
                    "inputs": inputs or {},
                    "seen_active": False,
                    "visible": False,
                    "final": None,
                    "marker": None,
                    "verdict": None,
                }
            )

    def update_latest(self, kid: str, **fields) -> None:
        """Sets ``fields`` on the latest push of ``kid``."""
        with self.change() as data:
            pushes = data["kernels"].get(kid, {}).get("pushes", [])
            if pushes:
                pushes[-1].update(fields)

    def set_plan(self, plan: dict) -> None:
        with self.change() as data:
            data["plan"] = plan

    def record_submission(self, row: dict) -> None:
        with self.change() as data:
            data["submissions"].append(row)

    def update_submission(self, ref: str, **fields) -> None:
        with self.change() as data:
            for row in data["submissions"]:
                if row.get("ref") == ref:
                    row.update(fields)

    # -- one driver at a time ------------------------------------------------------------------------------------
    def hold_driver(self, what: str) -> None:
        """Refuses a second command driving these kernels from another terminal while this one runs."""
        self.dir.mkdir(parents=True, exist_ok=True)
        f = open(self.dir / ".driver.lock", "a+")  # noqa: SIM115 - held until the process exits
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise BuildError(
                f"{holder} is driving these kernels already (lock {self.dir / '.driver.lock'}): wait for it, or "
                "stop it; the same command resumes from the ledger"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"build_kernel.py {what} (pid {os.getpid()})")
        f.flush()
        self._driver = f
