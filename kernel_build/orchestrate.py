"""From a build to a score through the real kaggle CLI: Kaggle is the record, the ledger its cache.

One reconcile step (``Orchestrator.settle``, then ``next_step``) is what every command does first: what Kaggle
says of a kernel plus what the ledger says gives the next action (skip, wait or push). Kaggle's answers, as the
2.2.5 CLI prints them and as the field reports them (docs/kaggle.md), and what is done with each:

- A kernel's state can be rebuilt from Kaggle alone: its versions (``kernels pull OWNER/SLUG/N`` answers each
  version's source until one doesn't exist), each version's status (``kernels status OWNER/SLUG/N``) and its
  ``run_status.json``, which names the content hash of the kernel that ran (its built ``CONTENT_HASH``) and, for
  the submit kernel, what each train output it read said of itself (``identity``, ``_same_inputs``). With no
  ledger, or an old or corrupt one, the same command asks Kaggle and skips what completed on the same content.
- Intent before action: a push is recorded as intended before its CLI call, and as done or unknown after it. An
  unknown outcome (a timeout, an error after sending, a signal) is resolved by asking Kaggle for the kernel's
  versions and their sources before anything is pushed again. SIGINT, SIGTERM and SIGHUP are held meanwhile.
- Status by version is asked where a version is known; where the server answers for the kernel instead, a final
  status counts as this push's only once the run was seen queued or running since, or for a kernel's first
  version, or once the pushed version's own output holds its end marker (it ended between polls). These guesses
  are the fallback, not the core.
- A kernel never pushed answers ``Permission 'kernels.get' was denied`` (403) or ``Notebook not found`` (404),
  and a new kernel answers 403 for a short while after its first push: "never pushed" when nothing was pushed,
  "not visible yet" within ``visibility_s`` of our first push. For a kernel seen before, several denials in a row
  mean the login expired.
- A script that crashed can be reported ``COMPLETE``: a run is done only when its output holds
  ``run_status.json`` with ``"ok": true``, the kernel's last act. A read that is denied or fails is retried and
  then reported as "couldn't read", never recorded as a crash.
- ``CANCEL_REQUESTED`` may still hold the GPU session (active); ``NEW_SCRIPT`` (saved in the editor, never run)
  holds nothing. The ``Failure message`` line of a status is kept with the verdict.
- One GPU session at a time in practice: ``max_parallel`` defaults to 1, and the GPU-session refusal is
  retried with backoff, until the wait's deadline (without ``--wait`` it stops and says nothing was pushed).
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

from kernel_build.kaggle_cli import Answer, CredentialsGone, KaggleCli, credentials_gone_message
from kernel_build.kernel import METADATA_FILE, Build, BuildError, Kernel, content_hash, embed_content_hash
from kernel_build.ledger import Ledger, ledger_dir

PUSHED = re.compile(r"Kernel version (\d+) successfully pushed")
STATUS = re.compile(r'has status "(?:KernelWorkerStatus\.)?(\w+)"')
FAILURE = re.compile(r'^Failure message: "(.*)"\s*$', re.M | re.S)
GPU_LIMIT = "Maximum batch GPU session count"
# Lines the CLI prints, exit 0, when the server refuses the push or a source (tags, dataset, competition and
# kernel sources: "The following are not valid ... and could not be added to the kernel: [...]").
REJECTED = (re.compile(r"^Kernel push error: .*"), re.compile(r"^The following are not valid .*"))
ACTIVE = ("QUEUED", "RUNNING", "CANCEL_REQUESTED")  # a cancel requested may still hold the GPU session
FINAL = ("COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED")
NEVER_RUN = "NEW_SCRIPT"  # saved in the editor, never run: holds no session, and isn't a run of ours
NOT_PUSHED, HIDDEN = "NOT_PUSHED", "NOT_VISIBLE_YET"
PLACEHOLDER_OWNER = "your-kaggle-username"
RUN_STATUS = "run_status.json"
SESSION_MARGIN_S = 15 * 60  # the -t session timeout: the kernel's own time budget plus this
QUEUE_MARGIN_S = 60 * 60  # the wait's deadline: the session timeout plus this (the GPU queue took ~10 min)
READ_TRIES = 4  # a denied or failed read of a run's output, before "couldn't read"
MAX_VERSIONS_ASKED = 50  # versions asked for in one look at a kernel (a server that ignores the version stops here)
RESUMES = "the same command resumes (the ledger in .kaggle-ledger/, or Kaggle itself)"


class GpuLimit(Exception):
    """Kaggle refused a push for the GPU-session limit: push it later."""


class Interrupted(BuildError):
    """Ctrl-C: the kernels run on, and the same command resumes."""


class ReadFailed(BuildError):
    """A run's output couldn't be read (denied, not found, an error): nothing is concluded from it."""


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


def source_hash(text: str) -> str:
    """A kernel version's code as Kaggle keeps it (``kernels pull``): a script's text, or a notebook's cell
    sources (the CLI rewrites a notebook's JSON when it pushes it). The pushed code and its pull hash the same."""
    with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
        cells = json.loads(text)["cells"]
        text = "\n".join(c["source"] if isinstance(c["source"], str) else "".join(c["source"]) for c in cells)
    return hashlib.sha256(text.strip().encode()).hexdigest()[:16]


def code_source_hash(kernel: Kernel) -> str:
    return source_hash(kernel.code_path().read_text())


def identity(push: dict) -> str | None:
    """The content a recorded version ran: the hash this repo pushed it with. For a version found on Kaggle (or
    recorded without a hash), its ``run_status.json``'s ``content_hash`` once read (the built kernel's
    ``CONTENT_HASH``, which covers its metadata too), else what its pulled source said."""
    read = (push.get("marker") or {}).get("content_hash")
    if read and (push.get("from_kaggle") or not push.get("hash")):
        return read
    return push.get("hash")


HELD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def no_interrupt() -> Iterator[None]:
    """Holds Ctrl-C, SIGTERM and SIGHUP (a closed terminal, a dropped SSH connection) until the block ends, then
    delivers them: a push or a submission is recorded or not made, never sent and forgotten. (The CLI's child
    runs in its own session, so the terminal's signals don't reach it.)"""
    caught: list[int] = []
    previous = {}
    try:
        for sig in HELD_SIGNALS:
            previous[sig] = signal.signal(sig, lambda signum, _frame: caught.append(signum))
    except ValueError:  # not the main thread: nothing to hold
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for sig in dict.fromkeys(caught):
        if sig == signal.SIGINT:
            raise KeyboardInterrupt
        signal.raise_signal(sig)


class Orchestrator:
    """Pushes, waits for and checks the kernels of a build; Kaggle is the record, the ledger its cache.

    Args:
        build: the built kernels (the driver's own snapshot of them).
        competition: the competition they read.
        runs_dir: the pulled outputs' folder; the ledger lives beside it (``ledger.ledger_dir``).
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
        self.runs_dir = Path(runs_dir)
        self.ledger = Ledger(ledger_dir(self.runs_dir), legacy=self.runs_dir)
        self.poll, self.max_parallel, self.force, self.sleep = poll, max_parallel, force, sleep
        self.budgets_h = budgets_h or {}
        self.visibility_s, self.stale_s = visibility_s, stale_s
        self._shown: dict[str, str] = {}  # the last status line printed per kernel, across waves
        self._before: dict[str, str] = {}  # each kernel's status just before we pushed it
        self._failure: dict[str, str] = {}  # the last "Failure message" line of each kernel's status
        self._refused_since: float | None = None  # the first GPU-session refusal of the current streak
        self._versioned: dict[str, bool] = {}  # whether the last status of each kernel was its version's own
        self._unpushed: dict[str, str] = {}  # the status of kernels with no push on record, asked once a command

    # -- what Kaggle says, read against the ledger -------------------------------------------------------------
    def _status(self, kid: str, version: int | None) -> Answer:
        """``kernels status``, of the version where one is known (2.2.5 sends it as ``versionLabel``)."""
        return self.cli.call("kernels", "status", f"{kid}/{version}" if version else kid)

    def observe(self, kid: str, *, cached: bool = False) -> str:
        """Kaggle's status of ``kid``'s latest push (by version), or NOT_PUSHED / NOT_VISIBLE_YET; notes in the
        ledger what it learnt. ``cached``: a kernel with no push on record is asked once per command (the driver
        lock keeps other pushes out meanwhile)."""
        latest = self.ledger.latest(kid)
        if latest is None and cached and kid in self._unpushed and not self.ledger.intent(kid):
            return self._unpushed[kid]
        status = self._observe(kid, latest)
        if latest is None:
            self._unpushed[kid] = status
        return status

    def _observe(self, kid: str, latest: dict | None) -> str:
        version = (latest or {}).get("version")
        answer = self._status(kid, version)
        if answer.kind == "missing" and version:  # the server doesn't know the version label: ask for the kernel
            version, answer = None, self._status(kid, None)
        self._versioned[kid] = bool(version) and answer.kind == "ok"
        for retry in range(3):  # a kernel seen before: denials in a row mean the login is gone
            if not answer.unanswered or latest is None or not self._seen_before(kid):
                break
            self.sleep(min(self.poll, 2.0) * 2**retry)
            answer = self._status(kid, version)
        if answer.unanswered:
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
        failure = FAILURE.search(answer.out)
        if failure:
            self._failure[kid] = failure.group(1).strip()
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
        if latest.get("from_kaggle") and self._versioned.get(kid):  # found on Kaggle: its version's own status
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

    # -- Kaggle's versions: the record -------------------------------------------------------------------------
    def versions_since(self, kid: str, known: int) -> list[tuple[int, str | None, str | None]]:
        """The versions of ``kid`` after ``known`` that Kaggle has, oldest first, each as (version, its source's
        hash, None): ``kernels pull OWNER/SLUG/N`` for N = known + 1, ... until a version doesn't exist. A version
        whose source can't be pulled is (version, None, the content hash its ``run_status.json`` names)."""
        found: list[tuple[int, str | None, str | None]] = []
        for n in range(known + 1, known + 1 + MAX_VERSIONS_ASKED):
            with tempfile.TemporaryDirectory() as tmp:
                answer = self.cli.call("kernels", "pull", f"{kid}/{n}", "-p", tmp)
                files = [p for p in Path(tmp).iterdir() if p.is_file() and p.name != METADATA_FILE]
                if answer.kind == "ok" and files:
                    found.append((n, source_hash(files[0].read_text()), None))
                    continue
            if answer.kind == "missing" or (answer.unanswered and not self._status(kid, None).unanswered):
                break  # no version n (the kernel itself answers): the list is complete
            read = self._marker_hash(kid, n)  # no source: the run's own word on what ran
            if read:
                found.append((n, None, read))
                continue
            raise ReadFailed(
                f"couldn't ask Kaggle for {kid} version {n} ({answer.why()}): nothing is pushed again until it "
                f"answers; {RESUMES}"
            )
        return found

    def _marker_hash(self, kid: str, version: int) -> str | None:
        """The ``content_hash`` in a version's ``run_status.json`` (None: no marker, or one without it)."""
        with contextlib.suppress(ValueError):
            marker = fetch_file(self.cli, kid, version, RUN_STATUS)
            return marker.get("content_hash") or None if isinstance(marker, dict) else None
        return None

    def adopt(self, kernel: Kernel) -> None:
        """Fills the ledger from Kaggle where it doesn't know: a kernel with no entry (no ledger, a lost one, a
        fresh clone), or an entry of an earlier release with no content hash. Kaggle's latest version counts as
        this content's when its source is this build's code (or, when its source can't be pulled, when its
        ``run_status.json`` names this build's content hash; once its run is concluded, ``identity`` reads the
        marker's hash before the source's word)."""
        kid = kernel.id
        pushes = self.ledger.pushes(kid)
        if pushes and pushes[-1].get("hash") is not None:
            return
        if not pushes and self.observe(kid, cached=True) in (NOT_PUSHED, NEVER_RUN):
            return
        known = max((p.get("version") or 0 for p in pushes), default=0)
        ours = code_source_hash(kernel)
        if pushes:  # an old entry without a hash: its version's source tells
            recheck = self._source_of(kid, known)
        else:
            recheck = []
        found = recheck + self.versions_since(kid, known)
        if not found:
            return
        n, src, read = found[-1]
        same = src == ours if src is not None else read == content_hash(kernel)
        fields = {"source": src, "from_kaggle": True, "visible": True}
        if pushes and n == known:
            self.ledger.update_latest(kid, hash=content_hash(kernel) if same else f"other:{src or read}", **fields)
        else:
            self.ledger.record_push(
                kid,
                version=n,
                content_hash=content_hash(kernel) if same else f"other:{src or read}",
                gpu=self.uses_gpu(kernel),
                status_before=None,
                inputs=None,
                pushed_at=0.0,
                **fields,
            )
        print(f"{kid}: Kaggle has version {n} ({'this build' if same else 'other code'}); the ledger knows it now")

    def _source_of(self, kid: str, version: int) -> list[tuple[int, str | None, str | None]]:
        with tempfile.TemporaryDirectory() as tmp:
            answer = self.cli.call("kernels", "pull", f"{kid}/{version}", "-p", tmp)
            files = [p for p in Path(tmp).iterdir() if p.is_file() and p.name != METADATA_FILE]
            if answer.kind == "ok" and files:
                return [(version, source_hash(files[0].read_text()), None)]
        read = self._marker_hash(kid, version)
        return [(version, None, read)] if read else []

    def resolve_intent(self, kernel: Kernel) -> None:
        """A push whose answer wasn't read (lost, timed out, cut by a signal): Kaggle's versions since say
        whether it got there. Found: recorded, never pushed again. Not found: the intent is dropped."""
        kid = kernel.id
        intent = self.ledger.intent(kid)
        if not intent:
            return
        known = intent.get("known") or 0
        deadline = (intent.get("at") or time.time()) + self.visibility_s
        delay = max(self.poll, 0.5)
        while True:
            answer = self._status(kid, None)
            if not answer.unanswered or known or time.time() > deadline:
                break
            if delay == max(self.poll, 0.5):
                print(f"  {kid}: asking Kaggle whether the push got there (a new kernel shows after a while)")
            self.sleep(delay)
            delay = min(delay * 2, 60.0)
        found = self.versions_since(kid, known) if not answer.unanswered else []
        if not found:
            print(f"{kid}: Kaggle has no version after {known}: the push didn't get there", flush=True)
            self.ledger.clear_intent(kid)
            return
        n, src, read = found[-1]
        same = src == intent.get("source") if src is not None else read == intent.get("hash")
        self.ledger.record_push(
            kid,
            version=n,
            content_hash=intent.get("hash") if same else f"other:{src or read}",
            gpu=bool(intent.get("gpu")),
            status_before=intent.get("status_before"),
            inputs=intent.get("inputs") if same else None,
            pushed_at=intent.get("at") or time.time(),
            source=src,
            found_after_lost_answer=True,
        )
        what = "this push's" if same else "other code's"
        print(f"{kid}: the push's answer was lost, but Kaggle has version {n} ({what}): not pushing it again")

    def settle(self, kernel: Kernel) -> dict | None:
        """The reconcile step every command takes first: an unknown push resolved, the ledger filled from
        Kaggle where it doesn't know, and a run that has ended on Kaggle concluded (no ``wait`` needed).
        Returns the latest push (None: never pushed). Raises ReadFailed if the run's output couldn't be read."""
        self.resolve_intent(kernel)
        self.adopt(kernel)
        latest = self.ledger.latest(kernel.id)
        if latest is not None and latest.get("verdict") is None:
            status = self.observe(kernel.id)
            if self.is_ours(kernel.id, status):
                self.conclude(kernel.id, status)
            latest = self.ledger.latest(kernel.id)
        return latest

    # -- the run's own word ------------------------------------------------------------------------------------
    def conclude(self, kid: str, status: str) -> dict:
        """Reads the end marker (and the log) of a finished run; records and returns the verdict. A read that is
        denied or fails is retried, then raises ReadFailed: nothing is recorded from it.

        Returns:
            ``{"ok": bool, "why": str, "tail": [log lines]}``.
        """
        latest = self.ledger.latest(kid) or {}
        version = latest.get("version")
        failure = self._failure.pop(kid, None)
        if status != "COMPLETE":
            marker, log = None, self._log(kid, version)
            why = f"ended {status}" + (f": {failure}" if failure else "")
            verdict = {"ok": False, "why": why}
        else:
            marker, log = self._marker_and_log(kid, version)
            if marker is None:
                verdict = {"ok": False, "why": f"COMPLETE, but its output has no {RUN_STATUS}: the script crashed"}
            elif not marker.get("ok"):
                left = marker.get("folds_left")
                verdict = {"ok": False, "why": f"stopped before the end ({RUN_STATUS} ok: false, folds left {left})"}
            else:
                verdict = {"ok": True, "why": "complete"}
        verdict["tail"] = [] if verdict["ok"] else traceback_tail(log or self._log(kid, version))
        self.ledger.update_latest(
            kid, final=status, marker=marker, verdict="ok" if verdict["ok"] else "failed", why=verdict["why"]
        )
        return verdict

    def _marker_and_log(self, kid: str, version: int | None) -> tuple[dict | None, str]:
        """The run's ``run_status.json`` (None only when the listing succeeded without it) and its log."""
        ref = f"{kid}/{version}" if version else kid
        delay = max(min(self.poll, 2.0), 0.05)
        for attempt in range(READ_TRIES):
            with tempfile.TemporaryDirectory() as tmp:
                pattern = f"^{re.escape(RUN_STATUS)}$"
                answer = self.cli.call("kernels", "output", ref, "-p", tmp, "--file-pattern", pattern)
                if answer.kind == "ok":
                    path = Path(tmp) / RUN_STATUS
                    marker = None
                    if path.is_file():
                        try:
                            marker = json.loads(path.read_text())
                        except ValueError:
                            marker = {"ok": False, "why": f"{RUN_STATUS} is not JSON"}
                    logs = list(Path(tmp).glob("*.log"))
                    return marker, logs[0].read_text() if logs else ""
            if attempt + 1 < READ_TRIES:
                print(f"  {ref}: couldn't read its {RUN_STATUS} ({answer.why()}); retry in {delay:.1f} s", flush=True)
                self.sleep(delay)
                delay *= 2
        raise ReadFailed(
            f"couldn't read {ref}'s {RUN_STATUS} ({answer.why()}), {READ_TRIES} tries: nothing is concluded from "
            f"that, the run is not counted as failed; {RESUMES} and reads it again"
        )

    def _log(self, kid: str, version: int | None = None) -> str:
        answer = self.cli.call("kernels", "logs", f"{kid}/{version}" if version else kid)
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

    def _same_inputs(self, kernel: Kernel, latest: dict) -> bool:
        """A push's inputs against now's. Where the push didn't record them (found on Kaggle, or a ledger of an
        earlier release), its run's ``run_status.json`` says what each input said of itself when it was read
        (``inputs``: content hash, end time): compared with each input kernel's latest version. With neither,
        they are taken as now's."""
        recorded = latest.get("inputs")
        if recorded is not None:
            return recorded == self.inputs(kernel)
        read = (latest.get("marker") or {}).get("inputs")
        if not isinstance(read, dict):
            return True
        return all(self._read_latest(kid, read.get(kid)) for kid in kernel.metadata().get("kernel_sources") or [])

    def _read_latest(self, kid: str, read: dict | None) -> bool:
        """Whether what a run read of ``kid``'s output (its ``input_status``) was ``kid``'s latest version: the
        same end time where both are known, else the same content hash."""
        if not isinstance(read, dict) or read.get("missing") or read.get("unreadable"):
            return False  # it didn't read that kernel's finished output
        latest = self.ledger.latest(kid)
        if latest is None:
            return True  # nothing known of it here to compare with
        finished = (latest.get("marker") or {}).get("finished_at")
        if finished and read.get("finished_at"):
            return finished == read["finished_at"]
        ours = identity(latest)
        return not (ours and read.get("content_hash")) or ours == read["content_hash"]

    def next_step(self, kernel: Kernel) -> str:
        """``skip`` (complete on this content and these inputs), ``wait`` (pushed, not concluded yet) or ``push``,
        from what Kaggle and the ledger say (``settle``)."""
        latest = self.settle(kernel)
        same = latest is not None and identity(latest) == content_hash(kernel) and self._same_inputs(kernel, latest)
        if latest is not None and latest.get("verdict") is None:
            return "wait"  # running, or ended unseen: never a second version over it
        if same and latest.get("verdict") == "ok":
            if latest.get("inputs") is None:
                self.ledger.update_latest(kernel.id, inputs=self.inputs(kernel))
            return "skip"
        if same and latest.get("verdict") == "failed" and not self.force:
            raise BuildError(
                f"{kernel.id} version {latest['version']} failed on this same content ({latest.get('why')}): "
                "fix it and build again (a changed kernel is pushed as a new version), or --force to push it again"
            )
        status = self.observe(kernel.id, cached=True)
        self._before[kernel.id] = status
        if status in ACTIVE and not self.force:
            raise BuildError(
                f"refusing to push {kernel.id}: a run of it is {status} that this repo didn't push (a new version "
                "starts a second session, and both spend GPU hours). Wait for it or stop it on its page, or --force"
            )
        return "push"

    def push_one(self, kernel: Kernel) -> int:
        """``kaggle kernels push``: the intent recorded first, the answer (or its loss) after, signals held
        meanwhile; returns the version. Raises GpuLimit, or BuildError."""
        args = ["kernels", "push", "-p", str(kernel.folder)]
        timeout = self.session_timeout_s(kernel)
        if timeout:
            args += ["-t", str(timeout)]
        known = max((p.get("version") or 0 for p in self.ledger.pushes(kernel.id)), default=0)
        embed_content_hash(kernel)  # a hand edit since the build: the pushed code still names its own content
        record = dict(
            content_hash=content_hash(kernel),
            gpu=self.uses_gpu(kernel),
            status_before=self._before.get(kernel.id),
            inputs=self.inputs(kernel),
        )
        src = code_source_hash(kernel)
        with no_interrupt():
            self.ledger.set_intent(
                kernel.id,
                state="intended",
                at=time.time(),
                known=known,
                hash=record["content_hash"],
                source=src,
                gpu=record["gpu"],
                status_before=record["status_before"],
                inputs=record["inputs"],
            )
            answer = self.cli.once(*args, timeout=max(self.cli.timeout, 300.0))
            m = PUSHED.search(answer.out)
            rejected = [line for line in answer.out.splitlines() if any(r.match(line) for r in REJECTED)]
            if m:  # a version exists (and runs) even when a source was refused: keep it on record at once
                self.ledger.record_push(kernel.id, version=int(m.group(1)), source=src, **record)
            elif answer.rc == 0 or answer.kind == "auth":  # refused, or never sent: nothing on Kaggle
                self.ledger.clear_intent(kernel.id)
            else:  # a timeout, a lost answer: Kaggle may have it
                self.ledger.set_intent(kernel.id, state="unknown", why=answer.why())
        if answer.kind == "auth":
            raise CredentialsGone(credentials_gone_message(f"kaggle kernels push {kernel.id}"))
        if any(GPU_LIMIT in line for line in rejected):
            raise GpuLimit(next(line for line in rejected if GPU_LIMIT in line))
        if not m and answer.rc != 0:
            print(f"{kernel.id}: kaggle kernels push answered {answer.why()!r}; asking Kaggle what it did", flush=True)
            self.resolve_intent(kernel)
            latest = self.ledger.latest(kernel.id)
            if latest is not None and latest.get("version", 0) > known and latest.get("hash") == record["content_hash"]:
                return latest["version"]
        if answer.rc != 0 or rejected or not m:
            why = rejected or [answer.why()]
            pushed = f" (version {m.group(1)} was pushed anyway and runs: see status)" if m else ""
            raise BuildError(
                f"kaggle kernels push -p {kernel.folder} failed (exit {answer.rc}): " + " | ".join(why) + pushed
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
            refused_now = self._start(pending, active, wait=wait)
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
            # a version of other code (found on Kaggle) was waited for: this build is still to push
            redo = [k for k in active if k.id in finished and not self._is_this_build(k)]
            active[:] = [k for k in active if k.id not in finished]
            pending[:0] = redo

    def _start(self, pending: list[Kernel], active: list[Kernel], *, wait: bool = True) -> bool:
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
                    self._gpu_refused(kernel, str(e), wait=wait)
                    return True
                self._refused_since = None
                active.append(kernel)
            else:
                print(f"{kernel.id}: version {self.ledger.latest(kernel.id)['version']} was pushed before; waiting")
                active.append(kernel)
            pending.pop(0)
        return False

    def _gpu_refused(self, kernel: Kernel, refusal: str, *, wait: bool) -> None:
        """Without ``--wait``: stop, saying nothing was pushed. With it: retry, until the wait's deadline."""
        if not wait:
            raise BuildError(
                f"{kernel.id}: Kaggle refused the push ({refusal}): nothing was pushed. A GPU session of this account "
                "is running: run the same command once it ends, or add --wait to retry until it does"
            )
        now = time.time()
        self._refused_since = self._refused_since or now
        limit = self._refused_since + (self.session_timeout_s(kernel) or 12 * 3600) + QUEUE_MARGIN_S
        if now > limit:
            raise BuildError(
                f"{kernel.id}: Kaggle has refused it for the GPU-session limit for "
                f"{(now - self._refused_since) / 3600:.1f} h, longer than a session lasts: check "
                f"https://www.kaggle.com/code for a session that hangs and stop it there; {RESUMES}"
            )
        print(f"{kernel.id}: {refusal} Retrying with backoff until {time.strftime('%H:%M', time.localtime(limit))}")

    def _is_this_build(self, kernel: Kernel) -> bool:
        return identity(self.ledger.latest(kernel.id) or {}) == content_hash(kernel)

    # -- wait ---------------------------------------------------------------------------------------------------
    def deadline(self, kernel: Kernel) -> float:
        """When waiting for ``kernel``'s latest push gives up: its session limit plus the queue margin."""
        latest = self.ledger.latest(kernel.id) or {}
        session = self.session_timeout_s(kernel) or 12 * 3600
        return (latest.get("pushed_at") or time.time()) + session + QUEUE_MARGIN_S

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
                f"stopped waiting; the kernels run on. {RESUMES[0].upper()}{RESUMES[1:]}; "
                "`python build_kernel.py status` shows where they are"
            ) from None

    def _poll_one(self, kernel: Kernel) -> tuple[bool, bool]:
        """One look at ``kernel``: (concluded, its line changed). Raises on a failure or past the deadline."""
        kid = kernel.id
        latest = self.ledger.latest(kid) or {}
        if latest.get("verdict") is not None:  # concluded meanwhile (by another command's reconcile)
            if self._is_this_build(kernel):
                self._raise_if_failed(kid, latest)
            return True, False
        status = self.observe(kid)
        ours = self.is_ours(kid, status)
        shown = status if ours or status not in FINAL else f"{status} (previous run)"
        latest = self.ledger.latest(kid) or {}
        age = time.time() - (latest.get("pushed_at") or time.time())
        changed = self._shown.get(kid) != shown
        if changed:
            self._shown[kid] = shown
            print(f"  {_hms(age)}  {kid}  {shown}", flush=True)
        if ours:
            verdict = self.conclude(kid, status)
            if not verdict["ok"] and self._is_this_build(kernel):
                self._raise_if_failed(kid, self.ledger.latest(kid) or {}, verdict["tail"])
            elif not verdict["ok"]:
                print(
                    f"{kid}: version {latest.get('version')} (other code) {verdict['why']}; this build is pushed next"
                )
            return True, changed
        if status in (*FINAL, NEVER_RUN) and age > self.stale_s:
            raise BuildError(
                f"{kid}: {age / 60:.0f} min after version {latest.get('version')} was pushed, Kaggle still answers "
                f"{status} of another run and the new version shows no output: check "
                f"https://www.kaggle.com/code/{kid}. {RESUMES[0].upper()}{RESUMES[1:]}"
            )
        if time.time() > self.deadline(kernel):
            raise BuildError(
                f"{kid} has not ended {age / 3600:.1f} h after its push, past its session limit: check "
                f"https://www.kaggle.com/code/{kid} (stop it there if it hangs); {RESUMES}"
            )
        return False, changed

    def _raise_if_failed(self, kid: str, latest: dict, tail: list[str] | None = None) -> None:
        if latest.get("verdict") != "failed":
            return
        why = latest.get("why")
        if tail is not None:
            print(f"{kid} {why}; the end of its log:", flush=True)
            for line in tail or ["(no log)"]:
                print(f"    {line}")
        marker = latest.get("marker") or {}
        if marker.get("folds_left"):
            todo = (
                f"resume: attach this output (--set resume_from={kid}) and push again to train folds "
                f"{marker['folds_left']}"
            )
        else:
            todo = "fix the cause, build and run the same command: it pushes a new version of this kernel only"
        raise BuildError(f"{kid} failed: {why}: {(tail or ['no log'])[-1]}. Next: {todo}")


def fetch_file(cli: KaggleCli, kid: str, version: int, name: str) -> dict | None:
    """One JSON file of a kernel version's output (e.g. decision.json), or None."""
    with tempfile.TemporaryDirectory() as tmp:
        answer = cli.call("kernels", "output", f"{kid}/{version}", "-p", tmp, "--file-pattern", f"^{re.escape(name)}$")
        path = Path(tmp) / name
        return json.loads(path.read_text()) if answer.kind == "ok" and path.is_file() else None
