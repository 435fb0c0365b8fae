"""The run ledger: ``.kaggle-ledger/ledger.json``, a cache of what this repo asked of Kaggle and what Kaggle said.

Kaggle is the record: every kernel's versions, each version's status, source and ``run_status.json`` can be read
back (``orchestrate.Orchestrator.reconcile``). The ledger keeps what was learnt so that a command doesn't ask
again, and what can't be read back: the intent of a push or a submission made just before its CLI call, so an
answer lost after the work was done is looked for on Kaggle before anything is done twice.

- ``plan``: the kernels of the last push command, their waves, and each built kernel's content hash;
- ``kernels``: per kernel, its pushes: version, content hash, time, whether the run was seen queued or running,
  its final status, and its end marker (``run_status.json``) with the verdict drawn from it;
- ``intents``: per kernel, a push sent whose answer hasn't been read yet (``intended``, then ``unknown``);
- ``submissions``: each submission: intended, then its ref (or ``unknown``), then its scores.

It lives beside ``runs/``, not in it (``.kaggle-ledger/`` at the repo root by default), so deleting the pulled
outputs keeps it; a ledger from an earlier release (``runs/ledger.json``, ``runs/pushes.json``) is imported once.
Losing it costs only questions to Kaggle. Writes are atomic and durable (a temporary file, ``fsync``, renamed
over the old one, the folder ``fsync``-ed) and made under a file lock, each re-reading the file first. A command
that drives kernels (push, wait, submit, probe) holds the driver lock for its whole run: a second one is refused
with the first one's pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from kernel_build.kernel import METADATA_FILE, BuildError

LEDGER_FILE = "ledger.json"
LEDGER_DIR = ".kaggle-ledger"
OLD_PUSHES_FILE = "pushes.json"  # what earlier releases kept in runs/: imported once
_HELD: dict = {}  # the driver locks this process holds, by path


def ledger_dir(runs_dir: Path) -> Path:
    """Where the ledger of a ``runs/`` folder lives: ``.kaggle-ledger/`` beside it."""
    return Path(runs_dir).resolve().parent / LEDGER_DIR


def _empty() -> dict:
    return {"plan": {}, "kernels": {}, "intents": {}, "submissions": []}


def write_durably(path: Path, text: str) -> None:
    """``text`` to ``path`` so that a crash or a power cut leaves the old file or the new one, never neither."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Ledger:
    """The ledger: read at will, changed only inside ``with ledger.change() as data:``.

    Args:
        directory: the folder that holds it (``.kaggle-ledger/``).
        legacy: a ``runs/`` folder whose ledger of an earlier release is imported when there is none here.
    """

    def __init__(self, directory: Path, legacy: Path | None = None):
        self.dir = Path(directory)
        self.path = self.dir / LEDGER_FILE
        self.legacy = Path(legacy) if legacy else None

    # -- reading -----------------------------------------------------------------------------------------------
    def read(self) -> dict:
        """The ledger as it is on disk now (an empty one if there is none yet, or if it is unreadable)."""
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                if not isinstance(data, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                return self._set_aside(e)
            return {**_empty(), **data}
        return self._import_legacy()

    def _set_aside(self, error: Exception) -> dict:
        """A corrupt ledger is kept for a look, and Kaggle is asked instead: nothing is re-run for it."""
        aside = self.path.with_name(f"{LEDGER_FILE}.corrupt-{int(time.time())}")
        with contextlib.suppress(OSError):
            os.replace(self.path, aside)
            print(f"note: {self.path} was not valid JSON ({error}); kept as {aside.name}, asking Kaggle instead")
        return _empty()

    def _import_legacy(self) -> dict:
        data = _empty()
        if self.legacy is None:
            return data
        old_ledger, old_pushes = self.legacy / LEDGER_FILE, self.legacy / OLD_PUSHES_FILE
        try:
            if old_ledger.is_file():  # runs/ledger.json of the previous release
                return {**data, **json.loads(old_ledger.read_text())}
            if old_pushes.is_file():  # pushes.json of an earlier release: one push per kernel, no hash
                for kid, rec in json.loads(old_pushes.read_text()).items():
                    data["kernels"][kid] = {"pushes": [{**rec, "hash": None, "final": None, "verdict": None}]}
        except ValueError:
            pass  # unreadable: Kaggle is asked instead
        return data

    def pushes(self, kid: str) -> list[dict]:
        return self.read()["kernels"].get(kid, {}).get("pushes", [])

    def latest(self, kid: str) -> dict | None:
        """The latest push of ``kid`` recorded here, or None."""
        pushes = self.pushes(kid)
        return pushes[-1] if pushes else None

    def intent(self, kid: str) -> dict | None:
        """A push of ``kid`` whose answer wasn't read: ``{"state": "intended"|"unknown", ...}``, or None."""
        return self.read()["intents"].get(kid)

    # -- writing -----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def change(self) -> Iterator[dict]:
        """Locks, re-reads, yields the data to change, and writes it back atomically and durably."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".ledger.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self.read()
            yield data
            write_durably(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")

    def record_push(
        self,
        kid: str,
        *,
        version: int,
        content_hash: str | None,
        gpu: bool,
        status_before: str | None,
        inputs: dict[str, int] | None = None,
        **extra,
    ) -> None:
        """A version of ``kid`` that exists on Kaggle (its push's answer read, or found there); settles the
        kernel's intent."""
        with self.change() as data:
            entry = data["kernels"].setdefault(kid, {"pushes": []})
            if any(p.get("version") == version for p in entry["pushes"]):
                data["intents"].pop(kid, None)
                return
            entry["pushes"].append(
                {
                    "version": version,
                    "hash": content_hash,
                    "pushed_at": time.time(),
                    "gpu": gpu,
                    "status_before": status_before,
                    "inputs": inputs,
                    "seen_active": False,
                    "visible": False,
                    "final": None,
                    "marker": None,
                    "verdict": None,
                    **extra,
                }
            )
            entry["pushes"].sort(key=lambda p: p.get("version") or 0)
            data["intents"].pop(kid, None)

    def update_latest(self, kid: str, **fields) -> None:
        """Sets ``fields`` on the latest push of ``kid``."""
        with self.change() as data:
            pushes = data["kernels"].get(kid, {}).get("pushes", [])
            if pushes:
                pushes[-1].update(fields)

    def set_intent(self, kid: str, **fields) -> None:
        """Records a push about to be sent (``state="intended"``), or one whose answer was lost (``unknown``)."""
        with self.change() as data:
            data["intents"][kid] = {**data["intents"].get(kid, {}), **fields}

    def clear_intent(self, kid: str) -> None:
        with self.change() as data:
            data["intents"].pop(kid, None)

    def set_plan(self, plan: dict) -> None:
        with self.change() as data:
            data["plan"] = plan

    def record_submission(self, row: dict) -> None:
        with self.change() as data:
            data["submissions"].append(row)

    def update_submission(self, match: dict, **fields) -> None:
        """Sets ``fields`` on the submissions whose fields equal ``match`` (e.g. ``{"ref": "4001"}``)."""
        with self.change() as data:
            for row in data["submissions"]:
                if all(row.get(k) == v for k, v in match.items()):
                    row.update(fields)

    # -- one driver at a time ------------------------------------------------------------------------------------
    def hold_driver(self, what: str) -> None:
        """Refuses a second command driving these kernels from another terminal while this one runs (held until
        the process exits; taking it again in the same process is a no-op)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        key = str((self.dir / ".driver.lock").resolve())
        if key in _HELD:
            return
        f = open(self.dir / ".driver.lock", "a+")  # noqa: SIM115 - held until the process exits
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise BuildError(
                f"{holder} is driving these kernels already (lock {self.dir / '.driver.lock'}): wait for it, or "
                "stop it; the same command resumes"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"build_kernel.py {what} (pid {os.getpid()})")
        f.flush()
        _HELD[key] = f


def snapshot(build_dir: Path, into: Path) -> Path:
    """A copy of a build folder's kernels (``into/<slug>/``): what a driver pushes and reads, whatever is built
    meanwhile. Taken under the build lock."""
    with build_lock(build_dir, shared=True):
        for meta in sorted(Path(build_dir).glob(f"*/{METADATA_FILE}")):
            shutil.copytree(meta.parent, Path(into) / meta.parent.name, dirs_exist_ok=True)
    return Path(into)


@contextlib.contextmanager
def build_lock(out_dir: Path, *, shared: bool = False) -> Iterator[None]:
    """Held while a build folder is written (exclusive) or read (shared): a reader never sees it half-written."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(out_dir.parent / f".{out_dir.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
