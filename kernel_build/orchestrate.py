"""From a build to a score through the real kaggle CLI: push in waves, wait, trust a run only on its own word.

Kaggle's answers, as the 2.2.5 CLI prints them and as the field reports them (docs/kaggle.md), and what is done
with each:

- ``kernels status`` has no version: right after a push it can still describe the previous run. A final status
  counts as this push's only once the run was seen queued or running since, or for a kernel's first version
  (it has no previous run), or once the pushed version's own output or log exists (it ended between polls).
- A kernel never pushed answers ``Permission 'kernels.get' was denied`` (403), and so does a new kernel for a
  short while after its first push: "never pushed" when the ledger has no push of it, "not visible yet" within
  ``visibility_s`` of our first push. For a kernel seen before, several denials in a row mean the login expired.
- A script that crashed can be reported ``COMPLETE``: a run is done only when its output holds
  ``run_status.json`` with ``"ok": true``, the kernel's last act.
- One GPU session at a time in practice: ``max_parallel`` defaults to 1, and the GPU-session refusal is
  retried with backoff whoever holds the session, until the wait's deadline.

Everything learnt is written to the ledger (``runs/ledger.json``) at once, so the same command resumes after any
stop: complete kernels on the same content are skipped, running ones waited for, the rest pushed in their waves.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from kernel_build.kaggle_cli import CredentialsGone, KaggleCli, credentials_gone_message
from kernel_build.kernel import METADATA_FILE, Build, BuildError, Kernel
from kernel_build.ledger import Ledger

PUSHED = re.compile(r"Kernel version (\d+) successfully pushed")
STATUS = re.compile(r'has status "(?:KernelWorkerStatus\.)?(\w+)"')
GPU_LIMIT = "Maximum batch GPU session count"
# Lines the CLI prints, exit 0, when the server refuses the push or a source (tags, dataset, competition and
# kernel sources: "The following are not valid ... and could not be added to the kernel: [...]").
REJECTED = (re.compile(r"^Kernel push error: .*"), re.compile(r"^The following are not valid .*"))
ACTIVE = ("QUEUED", "RUNNING", "NEW_SCRIPT")
FINAL = ("COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED", "CANCEL_REQUESTED")
NOT_PUSHED, HIDDEN = "NOT_PUSHED", "NOT_VISIBLE_YET"
PLACEHOLDER_OWNER = "your-kaggle-username"
RUN_STATUS = "run_status.json"
SESSION_MARGIN_S = 15 * 60  # the -t session timeout: the kernel's own time budget plus this
QUEUE_MARGIN_S = 60 * 60  # the wait's deadline: the session timeout plus this (the GPU queue took ~10 min)


class GpuLimit(Exception):
    """Kaggle refused a push for the GPU-session limit: push it later."""


class Interrupted(BuildError):
    """Ctrl-C: the kernels run on, and the same command resumes."""


def _hms(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def placeholder_problems(build: Build) -> list[str]:
    """The ``check`` and push refusal of the template's owner."""
    return [
        f"{k.metadata_path}: id {k.id!r} still has the placeholder owner {PLACEHOLDER_OWNER!r}: put your "
        f"Kaggle username in {METADATA_FILE}'s id"
        for k in build
        if k.id.split("/")[0] == PLACEHOLDER_OWNER
    ]


def traceback_tail(log_text: str, lines: int = 8) -> list[str]:
    """The last lines of a kernel log (a JSON array of events, or plain text), from its last traceback if any."""
    try:
        text = "".join(e.get("data", "") for e in json.loads(log_text))
    except (ValueError, AttributeError, TypeError):
        text = log_text
    rows = [r for r in text.splitlines() if r.strip()]
    starts = [i for i, r in enumerate(rows) if r.startswith("Traceback")]
    rows = rows[starts[-1] :] if starts else rows
    return rows[-lines:]


def content_hash(kernel: Kernel) -> str:
    """The built kernel's identity: its code file and its metadata. The same build gives the same hash."""
    meta_text = kernel.metadata_path.read_text()
    code = kernel.folder / json.loads(meta_text)["code_file"]
    digest = hashlib.sha256(meta_text.encode())
    digest.update(code.read_bytes() if code.is_file() else b"")
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def no_interrupt() -> Iterator[None]:
    """Holds Ctrl-C until the block ends, then raises it: a push or a submission is recorded or not made, never
    sent and forgotten. (The CLI's child runs in its own session, so the terminal's Ctrl-C doesn't reach it.)"""
    caught = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    except ValueError:  # not the main thread: nothing to hold
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


class Orchestrator:
    """Pushes, waits for and checks the kernels of a build; remembers everything in the ledger.

    Args:
        build: the built kernels.
        competition: the competition they read.
        runs_dir: where ``ledger.json`` (and pulled outputs) live.
        poll: seconds between two status rounds at first (it backs off to 5x while nothing changes).
        max_parallel: GPU kernels queued or running at a time (Kaggle allows 1 in practice; 2 on some accounts).
        force: push over a failure on the same content, or past the quota; submit a version again.
        budgets_h: each kernel id's time budget in hours (its session timeout adds ``SESSION_MARGIN_S``).
        visibility_s: how long after a first push a denied status means "not visible yet".
        stale_s: how long after a push a previous run's final status may still be answered.
        cli: the kaggle CLI runner (a default one checks the credentials).
    """

    def __init__(
        self,
        build: Build,
        *,
        competition: str,
        runs_dir: Path,
        poll: float = 60.0,
        max_parallel: int = 1,
        force: bool = False,
        budgets_h: dict[str, float] | None = None,
        visibility_s: float = 300.0,
        stale_s: float = 1800.0,
        cli: KaggleCli | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.cli = cli or KaggleCli(backoff=min(2.0, poll), sleep=sleep)
        self.build, self.competition = build, competition
        self.ledger = Ledger(runs_dir)
        self.runs_dir = Path(runs_dir)
        self.poll, self.max_parallel, self.force, self.sleep = poll, max_parallel, force, sleep
        self.budgets_h = budgets_h or {}
        self.visibility_s, self.stale_s = visibility_s, stale_s
        self._shown: dict[str, str] = {}  # the last status line printed per kernel, across waves
        self._before: dict[str, str] = {}  # each kernel's status just before we pushed it

    # -- what Kaggle says, read against the ledger -------------------------------------------------------------
    def observe(self, kid: str) -> str:
        """Kaggle's status of ``kid``, or NOT_PUSHED / NOT_VISIBLE_YET; notes in the ledger what it learnt."""
        latest = self.ledger.latest(kid)
        answer = self.cli.call("kernels", "status", kid)
        for retry in range(3):  # a kernel seen before: denials in a row mean the login is gone
            if answer.kind != "denied" or latest is None or not self._seen_before(kid):
                break
            self.sleep(min(self.poll, 2.0) * 2**retry)
            answer = self.cli.call("kernels", "status", kid)
        if answer.kind == "denied":
            if latest is None:
                return NOT_PUSHED
            if self._seen_before(kid):
                raise CredentialsGone(credentials_gone_message(f"kaggle kernels status {kid} (denied 4 times)"))
            age = time.time() - latest["pushed_at"]
            if age < self.visibility_s:
                return HIDDEN
            raise BuildError(
                f"{kid} is still denied {age / 60:.0f} min after its first push: Kaggle names a new kernel after "
                f"its title, so a title that doesn't slugify to {kid.split('/')[1]!r} pushes fine and is never "
                f"found again. Check https://www.kaggle.com/code/{kid} and the title in {METADATA_FILE}"
            )
        m = STATUS.search(answer.out)
        if answer.kind != "ok" or not m:
            raise BuildError(f"kaggle kernels status {kid} failed: {answer.why()}")
        status = m.group(1)
        if latest is not None:
            seen = {} if latest.get("visible") else {"visible": True}
            if status in ACTIVE and not latest.get("seen_active"):
                seen.update(seen_active=True, seen_at=time.time())
            if seen:
                self.ledger.update_latest(kid, **seen)
        return status

    def _seen_before(self, kid: str) -> bool:
        return any(p.get("visible") or p.get("seen_active") for p in self.ledger.pushes(kid))

    def is_ours(self, kid: str, status: str) -> bool:
        """Whether a final ``status`` is about the latest push (not the previous run's, still answered)."""
        latest = self.ledger.latest(kid)
        if status not in FINAL or latest is None:
            return False
        if latest.get("seen_active") or latest.get("version") == 1 or latest.get("ended_unseen"):
            return True
        if latest.get("status_before") not in (None, status):  # a final status other than the previous run's
            return True
        if self._version_has_ended(kid, latest["version"]):
            self.ledger.update_latest(kid, ended_unseen=True)
            return True
        return False

    def _version_has_ended(self, kid: str, version: int) -> bool:
        """A run that ended well between two polls: its version's output holds its end marker."""
        with tempfile.TemporaryDirectory() as tmp:
            pattern = f"^{re.escape(RUN_STATUS)}$"
            answer = self.cli.call("kernels", "output", f"{kid}/{version}", "-p", tmp, "--file-pattern", pattern)
            return answer.kind == "ok" and (Path(tmp) / RUN_STATUS).is_file()

    # -- the run's own word ------------------------------------------------------------------------------------
    def conclude(self, kid: str, status: str) -> dict:
        """Reads the end marker (and the log) of a finished run; records and returns the verdict.

        Returns:
            ``{"ok": bool, "why": str, "tail": [log lines]}``.
        """
        latest = self.ledger.latest(kid) or {}
        version = latest.get("version")
        marker, log = self._marker_and_log(kid, version)
        if status != "COMPLETE":
            verdict = {"ok": False, "why": f"ended {status}"}
        elif marker is None:
            verdict = {"ok": False, "why": f"COMPLETE, but its output has no {RUN_STATUS}: the script crashed"}
        elif not marker.get("ok"):
            left = marker.get("folds_left")
            verdict = {"ok": False, "why": f"stopped before the end ({RUN_STATUS} ok: false, folds left {left})"}
        else:
            verdict = {"ok": True, "why": "complete"}
        verdict["tail"] = [] if verdict["ok"] else traceback_tail(log or self._log(kid))
        self.ledger.update_latest(
            kid, final=status, marker=marker, verdict="ok" if verdict["ok"] else "failed", why=verdict["why"]
        )
        return verdict

    def _marker_and_log(self, kid: str, version: int | None) -> tuple[dict | None, str]:
        ref = f"{kid}/{version}" if version else kid
        with tempfile.TemporaryDirectory() as tmp:
            pattern = f"^{re.escape(RUN_STATUS)}$"
            answer = self.cli.call("kernels", "output", ref, "-p", tmp, "--file-pattern", pattern)
            path = Path(tmp) / RUN_STATUS
            marker = None
            if answer.kind == "ok" and path.is_file():
                try:
                    marker = json.loads(path.read_text())
                except ValueError:
                    marker = {"ok": False, "why": f"{RUN_STATUS} is not JSON"}
            logs = list(Path(tmp).glob("*.log"))
            return marker, logs[0].read_text() if logs else ""

    def _log(self, kid: str) -> str:
        answer = self.cli.call("kernels", "logs", kid)
        return answer.out if answer.kind == "ok" else answer.why()

    # -- push ---------------------------------------------------------------------------------------------------
    def uses_gpu(self, kernel: Kernel) -> bool:
        return bool(kernel.metadata().get("enable_gpu"))

    def session_timeout_s(self, kernel: Kernel) -> int | None:
        """The ``-t`` of a GPU kernel's push: its time budget plus a margin, so a runaway stops before 12 h."""
        hours = self.budgets_h.get(kernel.id)
        return int(hours * 3600 + SESSION_MARGIN_S) if hours and self.uses_gpu(kernel) else None

    def inputs(self, kernel: Kernel) -> dict[str, int]:
        """The latest pushed version of each kernel whose output ``kernel`` reads (its ``kernel_sources``): the
        submit kernel's result depends on them as much as on its own code."""
        sources = kernel.metadata().get("kernel_sources") or []
        return {kid: (self.ledger.latest(kid) or {}).get("version") for kid in sources}

    def next_step(self, kernel: Kernel) -> str:
        """``skip`` (complete on this content and these inputs), ``wait`` (pushed, not concluded yet) or ``push``."""
        latest = self.ledger.latest(kernel.id)
        same = (
            latest is not None
            and latest.get("hash") == content_hash(kernel)
            and latest.get("inputs", {}) == self.inputs(kernel)
        )
        if latest is not None and latest.get("verdict") is None:
            return "wait"  # running, or ended unseen: never a second version over it
        if same and latest.get("verdict") == "ok":
            return "skip"
        if same and latest.get("verdict") == "failed" and not self.force:
            raise BuildError(
                f"{kernel.id} version {latest['version']} failed on this same content ({latest.get('why')}): "
                "fix it and build again (a changed kernel is pushed as a new version), or --force to push it again"
            )
        status = self.observe(kernel.id)
        self._before[kernel.id] = status
        if status in ACTIVE and not self.force:
            raise BuildError(
                f"refusing to push {kernel.id}: a run of it is {status} that this repo didn't push (a new version "
                "starts a second session, and both spend GPU hours). Wait for it or stop it on its page, or --force"
            )
        return "push"

    def push_one(self, kernel: Kernel) -> int:
        """``kaggle kernels push`` (held from Ctrl-C); returns the version. Raises GpuLimit, or BuildError."""
        args = ["kernels", "push", "-p", str(kernel.folder)]
        timeout = self.session_timeout_s(kernel)
        if timeout:
            args += ["-t", str(timeout)]
        with no_interrupt():
            answer = self.cli.once(*args, timeout=max(self.cli.timeout, 300.0))
            m = PUSHED.search(answer.out)
            if m:  # a version exists (and runs) even when a source was refused: keep it on record at once
                self.ledger.record_push(
                    kernel.id,
                    version=int(m.group(1)),
                    content_hash=content_hash(kernel),
                    gpu=self.uses_gpu(kernel),
                    status_before=self._before.get(kernel.id),
                    inputs=self.inputs(kernel),
                )
        if answer.kind == "auth":
            raise CredentialsGone(credentials_gone_message(f"kaggle kernels push {kernel.id}"))
        rejected = [line for line in answer.out.splitlines() if any(r.match(line) for r in REJECTED)]
        if any(GPU_LIMIT in line for line in rejected):
            raise GpuLimit(next(line for line in rejected if GPU_LIMIT in line))
        if answer.rc != 0 or rejected or not m:
            why = rejected or [answer.why()]
            pushed = f" (version {m.group(1)} was pushed anyway and runs: see status)" if m else ""
            hint = "; the same command pushes it again" if answer.kind == "transient" and not m else ""
            raise BuildError(
                f"kaggle kernels push -p {kernel.folder} failed (exit {answer.rc}): " + " | ".join(why) + pushed + hint
            )
        version = int(m.group(1))
        extra = f", session timeout {timeout / 3600:.2f} h" if timeout else ""
        print(f"pushed {kernel.id} version {version}{extra}: https://www.kaggle.com/code/{kernel.id}", flush=True)
        return version

    def push(self, kernels: Sequence[Kernel], *, wait: bool) -> None:
        """Pushes ``kernels`` in order, at most ``max_parallel`` GPU runs at a time, the next as one completes;
        skips what is complete on the same content and waits for what runs. With ``wait``, returns when every
        one is complete; a failure raises."""
        pending, active = list(kernels), []
        refused = 0  # GPU-session refusals in a row
        while pending or active:
            refused_now = self._start(pending, active)
            if not wait:
                return
            refused = refused + 1 if refused_now else 0
            if not active and not pending:
                return
            if not active:  # refused while none of ours runs: someone else's session holds the GPU
                delay = min(self.poll * 2**refused, 1800.0)
                print(f"  the GPU session is taken; trying again in {_hms(delay)}", flush=True)
                self.sleep(delay)
                continue
            finished = self.wait(active, until_first=bool(pending))
            active[:] = [k for k in active if k.id not in finished]

    def _start(self, pending: list[Kernel], active: list[Kernel]) -> bool:
        """Moves what can start from ``pending`` to ``active``; True if Kaggle refused for the GPU limit."""
        while pending:
            kernel = pending[0]
            step = self.next_step(kernel)
            if step == "skip":
                latest = self.ledger.latest(kernel.id)
                print(f"{kernel.id}: complete on this content (version {latest['version']}), skipped", flush=True)
            elif step == "push":
                if self.uses_gpu(kernel) and sum(map(self.uses_gpu, active)) >= self.max_parallel:
                    return False
                try:
                    self.push_one(kernel)
                except GpuLimit as e:
                    print(f"{kernel.id}: {e} Retrying with backoff", flush=True)
                    return True
                active.append(kernel)
            else:
                print(f"{kernel.id}: version {self.ledger.latest(kernel.id)['version']} was pushed before; waiting")
                active.append(kernel)
            pending.pop(0)
        return False

    # -- wait ---------------------------------------------------------------------------------------------------
    def deadline(self, kernel: Kernel) -> float:
        """When waiting for ``kernel``'s latest push gives up: its session limit plus the queue margin."""
        latest = self.ledger.latest(kernel.id) or {"pushed_at": time.time()}
        session = self.session_timeout_s(kernel) or 12 * 3600
        return latest["pushed_at"] + session + QUEUE_MARGIN_S

    def wait(self, kernels: Sequence[Kernel], *, until_first: bool = False) -> list[str]:
        """Polls with backoff, one line per change, until every kernel has concluded (or the first, with
        ``until_first``); returns the ids concluded. A failure prints its log's end and raises."""
        interval, finished = self.poll, []
        try:
            while True:
                changed = False
                for kernel in kernels:
                    if kernel.id not in finished:
                        done, moved = self._poll_one(kernel)
                        changed |= moved
                        if done:
                            finished.append(kernel.id)
                if len(finished) == len(kernels) or (until_first and finished):
                    return finished
                interval = self.poll if changed else min(interval * 1.5, self.poll * 5)
                self.sleep(interval)
        except KeyboardInterrupt:
            raise Interrupted(
                "stopped waiting; the kernels run on. The same command resumes (runs/ledger.json); "
                "`python build_kernel.py status` shows where they are"
            ) from None

    def _poll_one(self, kernel: Kernel) -> tuple[bool, bool]:
        """One look at ``kernel``: (concluded, its line changed). Raises on a failure or past the deadline."""
        kid = kernel.id
        status = self.observe(kid)
        ours = self.is_ours(kid, status)
        shown = status if ours or status not in FINAL else f"{status} (previous run)"
        latest = self.ledger.latest(kid) or {"pushed_at": time.time()}
        age = time.time() - latest["pushed_at"]
        changed = self._shown.get(kid) != shown
        if changed:
            self._shown[kid] = shown
            print(f"  {_hms(age)}  {kid}  {shown}", flush=True)
        if ours:
            self._verdict(kid, status)
            return True, changed
        if status in FINAL and age > self.stale_s:
            raise BuildError(
                f"{kid}: {age / 60:.0f} min after version {latest['version']} was pushed, Kaggle still answers the "
                f"previous run's {status} and the new version shows no output: check "
                f"https://www.kaggle.com/code/{kid}. The same command resumes"
            )
        if time.time() > self.deadline(kernel):
            raise BuildError(
                f"{kid} has not ended {age / 3600:.1f} h after its push, past its session limit: check "
                f"https://www.kaggle.com/code/{kid} (stop it there if it hangs); the same command resumes"
            )
        return False, changed

    def _verdict(self, kid: str, status: str) -> None:
        verdict = self.conclude(kid, status)
        if verdict["ok"]:
            return
        print(f"{kid} {verdict['why']}; the end of its log:", flush=True)
        for line in verdict["tail"] or ["(no log)"]:
            print(f"    {line}")
        marker = (self.ledger.latest(kid) or {}).get("marker") or {}
        if marker.get("folds_left"):
            todo = (
                f"resume: attach this output (--set resume_from={kid}) and push again to train folds "
                f"{marker['folds_left']}"
            )
        else:
            todo = "fix the cause, build and run the same command: it pushes a new version of this kernel only"
        raise BuildError(f"{kid} failed: {verdict['why']}: {(verdict['tail'] or ['no log'])[-1]}. Next: {todo}")


def fetch_file(cli: KaggleCli, kid: str, version: int, name: str) -> dict | None:
    """One JSON file of a kernel version's output (e.g. decision.json), or None."""
    with tempfile.TemporaryDirectory() as tmp:
        answer = cli.call("kernels", "output", f"{kid}/{version}", "-p", tmp, "--file-pattern", f"^{re.escape(name)}$")
        path = Path(tmp) / name
        return json.loads(path.read_text()) if answer.kind == "ok" and path.is_file() else None
