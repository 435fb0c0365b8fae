"""Submitting a kernel version and waiting for its score; the probe that asks whether the competition still
scores late kernel submissions.

A submission spends one of the day's few slots, and a code competition may take hours to score it. So its ref
goes into the ledger the moment the CLI prints it, a version already submitted is refused unless ``--force``,
and running ``submit`` again resumes the wait for a pending score.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from kernel_build.kernel import METADATA_FILE, Build, BuildError, Kernel
from kernel_build.orchestrate import NOT_PUSHED, Orchestrator, no_interrupt

REF = re.compile(r"Submission ref: (\d+)")
FIELD = re.compile(r"^(Status|Error|Public Score|Private Score):\s*(.*)$", re.M)


def submission_message(train_config: dict, decision: dict) -> str:
    """What the submission says: model, size, folds, epochs and the decision rule chosen."""
    return (
        f"{train_config['model']} {train_config['image_size']}px folds {len(train_config['folds'])}/"
        f"{train_config['n_folds']} epochs {train_config['epochs']} rule {decision.get('chosen', '?')}"
    )


def submit(orch: Orchestrator, kernel: Kernel, *, version: int, message: str, wait_score: bool = True) -> dict:
    """``kaggle competitions submit -k``, once per version; then waits for the scores. Returns the ledger row."""
    earlier = [s for s in orch.ledger.read()["submissions"] if s["kernel"] == kernel.id and s["version"] == version]
    if earlier and not orch.force:
        row = earlier[-1]
        if row.get("status") == "pending" and wait_score:
            print(f"{kernel.id} v{version} was submitted before (ref {row['ref']}): waiting for its score")
            return wait_for_score(orch, row)
        raise BuildError(
            f"{kernel.id} version {version} was submitted already (ref {row['ref']}, {row.get('status')}, public "
            f"{row.get('public', '?')}): --force submits it again and spends one of today's submissions"
        )
    args = ["competitions", "submit", orch.competition, "-k", kernel.id, "-v", str(version)]
    with no_interrupt():
        answer = orch.cli.once(*args, "-f", "submission.csv", "-m", message)
        ref = REF.search(answer.out)
        row = {"ref": ref.group(1) if ref else "", "kernel": kernel.id, "version": version, "message": message}
        row.update(submitted_at=time.time(), status="pending" if ref else "refused")
        if ref or answer.rc == 0:
            orch.ledger.record_submission(row)
    if answer.rc != 0:
        raise BuildError(f"kaggle competitions submit refused {kernel.id} version {version}: {answer.why()}")
    print(answer.out.strip(), flush=True)
    return wait_for_score(orch, row) if wait_score and row["ref"] else row


def wait_for_score(orch: Orchestrator, row: dict) -> dict:
    """Polls ``kaggle competitions submission REF`` until scored; a scoring error prints its reason."""
    interval = orch.poll
    while True:
        answer = orch.cli.call("competitions", "submission", row["ref"])
        fields = dict(FIELD.findall(answer.out)) if answer.kind == "ok" else {}
        status = fields.get("Status", "")
        if status.endswith("ERROR"):
            error = fields.get("Error") or "no reason given"
            orch.ledger.update_submission(row["ref"], status="error", error=error)
            raise BuildError(f"submission {row['ref']} failed scoring: {error}")
        if status.endswith("COMPLETE") and fields.get("Public Score"):
            scores = {"public": fields["Public Score"], "private": fields.get("Private Score", "")}
            orch.ledger.update_submission(row["ref"], status="complete", **scores)
            print(f"{row['kernel']} v{row['version']}: public {scores['public']}, private {scores['private']}")
            return {**row, **scores, "status": "complete"}
        orch.sleep(interval)
        interval = min(interval * 1.5, orch.poll * 5)


PROBE_CODE = '''"""Probe: copies the competition's sample_submission.csv to submission.csv (no GPU, no internet)."""
import glob
import json
import shutil

found = glob.glob("/kaggle/input/{comp}/sample_submission.csv") + glob.glob(
    "/kaggle/input/competitions/{comp}/sample_submission.csv")
shutil.copy(found[0], "/kaggle/working/submission.csv")
print("copied", found[0])
with open("/kaggle/working/run_status.json", "w") as f:  # the last act: the run's own word that it ended well
    json.dump({{"ok": True, "kernel": "probe"}}, f)
'''


def probe_kernel(owner: str, *, competition: str, out_dir: Path) -> Kernel:
    """Writes the probe: a tiny offline CPU kernel that copies sample_submission.csv."""
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
    return Kernel("submit", meta["id"], slug, folder)


def probe(owner: str, *, competition: str, out_dir: Path, runs_dir: Path, poll: float) -> int:
    """Pushes the probe, waits for it, submits its output: says whether the competition takes a late kernel
    submission. Resumes like every step. Returns 0 if it does, 1 if not."""
    kernel = probe_kernel(owner, competition=competition, out_dir=out_dir)
    orch = Orchestrator(Build((kernel,)), competition=competition, runs_dir=runs_dir, poll=poll)
    orch.ledger.hold_driver("probe")
    print(f"probe: {kernel.id} is {_describe(orch.observe(kernel.id))}")
    orch.push([kernel], wait=True)
    version = orch.ledger.latest(kernel.id)["version"]
    done = [s for s in orch.ledger.read()["submissions"] if s["kernel"] == kernel.id and s.get("status") != "refused"]
    if done:
        row = done[-1]
    else:
        try:
            row = submit(orch, kernel, version=version, message="probe: sample_submission.csv", wait_score=False)
        except BuildError as e:
            print(f"probe: {competition} does NOT accept a late kernel submission. The CLI said:\n{e}")
            return 1
    print(f"probe: {competition} accepts a late kernel submission (ref {row['ref']}): the GPU runs can be scored")
    return 0


def _describe(status: str) -> str:
    return "not pushed yet" if status == NOT_PUSHED else status
