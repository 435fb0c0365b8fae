"""From a build to a score through the real kaggle CLI: push in order, wait, submit, probe.

Every call runs ``kaggle`` as a subprocess and reads what it prints (docs: /work/shared/KAGGLE.md). What the
CLI can't tell (which version a status is about) is kept in ``runs/pushes.json``: each push's version and
time, and whether that run has been seen queued or running since. A complete status counts only then.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kernel_build.kaggle_cli import CREDENTIALS_HINT, _has_credentials
from kernel_build.kernel import METADATA_FILE, Build, BuildError, Kernel

PUSHED = re.compile(r"Kernel version (\d+) successfully pushed")
STATUS = re.compile(r'has status "(?:KernelWorkerStatus\.)?(\w+)"')
GPU_LIMIT = "Maximum batch GPU session count"
# Lines the CLI prints, exit 0, when the server refuses the push or a source (tags, dataset, competition and
# kernel sources: "The following are not valid ... and could not be added to the kernel: [...]").
REJECTED = (re.compile(r"^Kernel push error: .*"), re.compile(r"^The following are not valid .*"))
ACTIVE = ("QUEUED", "RUNNING", "NEW_SCRIPT")
FINAL = ("COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED", "CANCEL_REQUESTED")
PLACEHOLDER_OWNER = "your-kaggle-username"


class GpuLimit(Exception):
    """Kaggle refused a push for the two-GPU-session limit: push it later."""


def kaggle(*args: str) -> tuple[int, str, str]:
    """Runs the kaggle CLI: (exit code, stdout, stderr)."""
    exe = shutil.which("kaggle")
    if exe is None:
        raise BuildError("the kaggle CLI is not on PATH: pip install kaggle")
    proc = subprocess.run([exe, *args], capture_output=True, text=True)
    if re.search(r"could not find kaggle\.json|401 Client Error|Unauthorized", proc.stdout + proc.stderr, re.I):
        raise BuildError(CREDENTIALS_HINT)
    return proc.returncode, proc.stdout, proc.stderr


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def placeholder_problems(build: Build) -> list[str]:
    """The ``--check`` and push refusal of the template's owner."""
    return [
        f"{k.metadata_path}: id {k.id!r} still has the placeholder owner {PLACEHOLDER_OWNER!r}: put your "
        f"Kaggle username in {METADATA_FILE}'s id"
        for k in build
        if k.id.split("/")[0] == PLACEHOLDER_OWNER
    ]


def traceback_tail(log_text: str, lines: int = 8) -> list[str]:
    """The last lines of a ``kaggle kernels logs`` JSON array (from its last traceback, if any)."""
    try:
        text = "".join(e.get("data", "") for e in json.loads(log_text))
    except (ValueError, AttributeError, TypeError):
        text = log_text
    rows = [r for r in text.splitlines() if r.strip()]
    starts = [i for i, r in enumerate(rows) if r.startswith("Traceback")]
    rows = rows[starts[-1] :] if starts else rows
    return rows[-lines:]


class Orchestrator:
    """Pushes, waits for and submits the kernels of a build.

    Args:
        build: the built kernels.
        competition: the competition they read.
        runs_dir: where ``pushes.json`` (and pulled outputs) live.
        poll: seconds between two status rounds at first (it backs off to 5x while nothing changes).
        max_parallel: GPU kernels queued or running at a time.
        force: push although a kernel runs or the submit kernel's sources are not complete.
    """

    def __init__(
        self,
        build: Build,
        *,
        competition: str,
        runs_dir: Path,
        poll: float = 60.0,
        max_parallel: int = 2,
        force: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not _has_credentials():
            raise BuildError(CREDENTIALS_HINT)
        self.build, self.competition, self.runs_dir = build, competition, Path(runs_dir)
        self.poll, self.max_parallel, self.force, self.sleep = poll, max_parallel, force, sleep
        self.state_path = self.runs_dir / "pushes.json"
        self.state: dict[str, dict] = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        self.t0 = time.time()
        self._shown: dict[str, str] = {}  # the last status line printed per kernel, across waves

    def _save(self) -> None:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.state_path.write_text(json.dumps(self.state, indent=1) + "\n")

    # -- status ----------------------------------------------------------------------------------------------
    def status(self, kid: str) -> str:
        rc, out, err = kaggle("kernels", "status", kid)
        m = STATUS.search(out)
        if rc != 0 and re.search(r"not found|404", err, re.I):
            return "NOT_PUSHED"
        if rc != 0 or not m:
            raise BuildError(f"kaggle kernels status {kid} failed: {(err or out).strip().splitlines()[-1:]}")
        status = m.group(1)
        rec = self.state.get(kid)
        if rec and status in ACTIVE and not rec.get("seen_active"):
            rec["seen_active"], rec["started"] = True, time.time()
            self._save()
        return status

    def done(self, kid: str, status: str) -> bool:
        """A final status that belongs to the latest push (seen queued or running since)."""
        rec = self.state.get(kid)
        return status in FINAL and (rec is None or rec.get("seen_active", False))

    def _describe(self, kid: str, status: str) -> str:
        rec = self.state.get(kid)
        if not rec:
            return status
        since = f"version {rec['version']} pushed {_hms(time.time() - rec['pushed_at'])} ago"
        if status in FINAL and not rec.get("seen_active"):
            return f"{status}, but not yet seen queued or running since {since} (may be the previous run's)"
        return f"{status}, {since}"

    # -- push ------------------------------------------------------------------------------------------------
    def _uses_gpu(self, kernel: Kernel) -> bool:
        return bool(kernel.metadata().get("enable_gpu"))

    def refuse_running(self, kernels: Sequence[Kernel]) -> None:
        """No second session of a kernel whose run is queued or running (unless --force)."""
        busy = [(k.id, s) for k in kernels for s in [self.status(k.id)] if s in ACTIVE]
        if busy and not self.force:
            raise BuildError(
                "refusing to push while a run is on (a new version starts a second session, and both "
                "spend GPU hours): "
                + "; ".join(f"{kid} is {self._describe(kid, s)}" for kid, s in busy)
                + ". Wait for it (--wait), or --force"
            )

    def refuse_stale_sources(self, submit: Kernel) -> None:
        """The submit kernel only after every train kernel it sources is complete on its latest version."""
        train_ids = {k.id for k in self.build.train}
        sources = [s for s in submit.metadata().get("kernel_sources", []) if s in train_ids]
        not_ready = [
            (kid, s) for kid in sources for s in [self.status(kid)] if not (s == "COMPLETE" and self.done(kid, s))
        ]
        if not_ready and not self.force:
            raise BuildError(
                "refusing to push the submit kernel: its train kernel(s) are not complete on their "
                "latest version: "
                + "; ".join(f"{kid} ({self._describe(kid, s)})" for kid, s in not_ready)
                + ". Wait for them (--wait), or --force"
            )

    def push_one(self, kernel: Kernel) -> int:
        """``kaggle kernels push``; returns the version. Raises GpuLimit, or BuildError on any rejection."""
        rc, out, err = kaggle("kernels", "push", "-p", str(kernel.folder))
        rejected = [line for line in out.splitlines() if any(r.match(line) for r in REJECTED)]
        if any(GPU_LIMIT in line for line in rejected):
            raise GpuLimit(next(line for line in rejected if GPU_LIMIT in line))
        m = PUSHED.search(out)
        if m:  # a version exists (and runs) even when a source was refused: keep it on record
            self.state[kernel.id] = {
                "version": int(m.group(1)),
                "pushed_at": time.time(),
                "seen_active": False,
                "gpu": self._uses_gpu(kernel),
            }
            self._save()
        if rc != 0 or rejected or not m:
            why = rejected or (err or out).strip().splitlines()[-2:] or ["no output"]
            pushed = f" (version {m.group(1)} was pushed anyway and runs: see --status)" if m else ""
            raise BuildError(f"kaggle kernels push -p {kernel.folder} failed (exit {rc}): " + " | ".join(why) + pushed)
        version = int(m.group(1))
        print(f"pushed {kernel.id} version {version}: https://www.kaggle.com/code/{kernel.id}", flush=True)
        return version

    def push(self, kernels: Sequence[Kernel], *, wait: bool) -> None:
        """Pushes ``kernels`` with at most ``max_parallel`` GPU runs at a time, the next as one completes."""
        queue, active = list(kernels), []
        gpu = [k for k in queue if self._uses_gpu(k)]
        if len(gpu) > self.max_parallel and not wait:
            raise BuildError(
                f"{len(gpu)} GPU kernels but at most {self.max_parallel} run at a time: add --wait to "
                f"push them in waves"
            )
        while queue or active:
            while queue:
                running_gpu = sum(1 for k in active if self._uses_gpu(k))
                if self._uses_gpu(queue[0]) and running_gpu >= self.max_parallel:
                    break
                try:
                    self.push_one(queue[0])
                except GpuLimit as e:
                    if not active:
                        raise BuildError(
                            f"{queue[0].id}: {e} Other sessions of yours are running; push again when they finish"
                        ) from None
                    print(f"{queue[0].id}: {e} Retrying when a kernel finishes", flush=True)
                    break
                active.append(queue.pop(0))
            if not wait:
                return
            finished = self.wait([k.id for k in active], until_first=bool(queue))
            active = [k for k in active if k.id not in finished]

    # -- wait ------------------------------------------------------------------------------------------------
    def wait(self, kids: Sequence[str], *, until_first: bool = False) -> list[str]:
        """Polls ``kaggle kernels status`` with backoff, one line per change, until every kernel is done (or the
        first, with ``until_first``); returns the done ones. A failed kernel's log tail is printed and raised."""
        last = self._shown
        interval, finished = self.poll, []
        try:
            while True:
                changed = False
                for kid in kids:
                    if kid in finished:
                        continue
                    status = self.status(kid)
                    shown = status if self.done(kid, status) or status in ACTIVE else f"{status} (previous run)"
                    if last.get(kid) != shown:
                        last[kid], changed = shown, True
                        rec = self.state.get(kid, {})
                        elapsed = time.time() - rec.get("pushed_at", self.t0)
                        print(f"  {_hms(elapsed)}  {kid}  {shown}", flush=True)
                    if self.done(kid, status):
                        finished.append(kid)
                        if status != "COMPLETE":
                            self._fail(kid, status)
                if len(finished) == len(kids) or (until_first and finished):
                    return finished
                interval = self.poll if changed else min(interval * 1.5, self.poll * 5)
                self.sleep(interval)
        except KeyboardInterrupt:
            raise BuildError(
                "stopped waiting (the kernels run on): python build_kernel.py --wait picks up again, "
                "--status shows them"
            ) from None

    def _fail(self, kid: str, status: str) -> None:
        rc, out, err = kaggle("kernels", "logs", kid)
        tail = traceback_tail(out) if rc == 0 else [err.strip()]
        print(f"{kid} ended {status}; the end of its log:", flush=True)
        for line in tail:
            print(f"    {line}")
        raise BuildError(f"{kid} ended {status}: {tail[-1] if tail else 'no log'}")

    # -- submit ----------------------------------------------------------------------------------------------
    def submit(
        self, kernel: Kernel, *, message: str, version: int | None = None, wait_score: bool = True
    ) -> dict[str, str]:
        """``kaggle competitions submit -k``; then waits for its scores. Returns the submission's row."""
        version = version or self.state.get(kernel.id, {}).get("version")
        if not version:
            raise BuildError(f"no pushed version of {kernel.id} is known here: pass --version N")
        rc, out, err = kaggle(
            "competitions",
            "submit",
            self.competition,
            "-k",
            kernel.id,
            "-v",
            str(version),
            "-f",
            "submission.csv",
            "-m",
            message,
        )
        if rc != 0:
            raise BuildError(
                f"kaggle competitions submit refused {kernel.id} version {version}: {err.strip() or out.strip()}"
            )
        print(out.strip(), flush=True)
        ref = re.search(r"Submission ref: (\d+)", out)
        row = {"ref": ref.group(1) if ref else "", "kernel": kernel.id, "version": version, "message": message}
        if wait_score and row["ref"]:
            row.update(self._scores(row["ref"]))
            print(f"{kernel.id} v{version}: public {row['public']}, private {row['private']}", flush=True)
        path = self.runs_dir / "submissions.json"
        rows = json.loads(path.read_text()) if path.is_file() else []
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows + [row], indent=1) + "\n")
        return row

    def _scores(self, ref: str) -> dict[str, str]:
        interval = self.poll
        while True:
            rc, out, err = kaggle("competitions", "submissions", self.competition, "-v")
            if rc != 0:
                raise BuildError(f"kaggle competitions submissions failed: {err.strip()}")
            for row in out.splitlines()[1:]:
                cells = row.split(",")
                if cells[0] == ref and len(cells) >= 7:
                    status, public, private = cells[-3], cells[-2], cells[-1]
                    if status.endswith("ERROR"):
                        raise BuildError(f"submission {ref} failed scoring: {row}")
                    if status.endswith("COMPLETE") and public:
                        return {"public": public, "private": private}
            self.sleep(interval)
            interval = min(interval * 1.5, self.poll * 5)


def submission_message(train_config: dict, decision: dict) -> str:
    """What the submission says: model, size, folds, epochs and the decision rule chosen."""
    return (
        f"{train_config['model']} {train_config['image_size']}px folds {len(train_config['folds'])}/"
        f"{train_config['n_folds']} epochs {train_config['epochs']} rule {decision.get('chosen', '?')}"
    )


def fetch_file(kid: str, version: int, name: str) -> dict | None:
    """One JSON file of a kernel version's output (e.g. decision.json), or None."""
    with tempfile.TemporaryDirectory() as tmp:
        rc, _, _ = kaggle("kernels", "output", f"{kid}/{version}", "-p", tmp, "--file-pattern", f"^{re.escape(name)}$")
        path = Path(tmp) / name
        return json.loads(path.read_text()) if rc == 0 and path.is_file() else None


PROBE_CODE = '''"""Probe: copies the competition's sample_submission.csv to submission.csv (no GPU, no internet)."""
import glob
import shutil

found = glob.glob("/kaggle/input/{comp}/sample_submission.csv") + glob.glob(
    "/kaggle/input/competitions/{comp}/sample_submission.csv")
shutil.copy(found[0], "/kaggle/working/submission.csv")
print("copied", found[0])
'''


def probe(owner: str, *, competition: str, out_dir: Path, runs_dir: Path, poll: float) -> int:
    """Builds and pushes a tiny offline CPU kernel, waits for it, submits its output: says whether the
    competition takes a late kernel submission. Returns 0 if it does, 1 if not."""
    slug = f"imet-probe-{competition}"
    folder = Path(out_dir) / "probe" / slug
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{slug}.py").write_text(PROBE_CODE.format(comp=competition))
    meta = {
        "id": f"{owner}/{slug}",
        "title": slug,
        "code_file": f"{slug}.py",
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": False,
        "enable_internet": False,
        "competition_sources": [competition],
        "kernel_sources": [],
        "dataset_sources": [],
    }
    (folder / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    kernel = Kernel("submit", meta["id"], slug, folder)
    orch = Orchestrator(Build((kernel,)), competition=competition, runs_dir=runs_dir, poll=poll)
    orch.refuse_running([kernel])
    orch.push_one(kernel)
    orch.wait([kernel.id])
    try:
        row = orch.submit(kernel, message="probe: sample_submission.csv", wait_score=False)
    except BuildError as e:
        print(f"probe: {competition} does NOT accept a late kernel submission. The CLI said:\n{e}")
        return 1
    print(f"probe: {competition} accepts a late kernel submission (ref {row['ref']}): the GPU runs can be scored")
    return 0
