"""Submitting a kernel version and waiting for its score; the probe that asks whether the competition still
scores late kernel submissions.

A submission spends one of the day's few slots, and a code competition may take hours to score it. So it is
recorded as intended before the CLI call, with a description that names the kernel version (``[SLUG vN]``), and
its ref the moment the CLI prints it. An answer lost after Kaggle took it (a timeout, a signal, an error after
sending, an accepted submission with no ref line) is looked up in ``kaggle competitions submissions`` by that
description before anything is submitted again. A version already submitted is refused unless ``--force``, and
running ``submit`` again resumes the wait for a pending score.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

from kernel_build.kernel import METADATA_FILE, Build, BuildError, Kernel
from kernel_build.orchestrate import NOT_PUSHED, Orchestrator, no_interrupt

REF = re.compile(r"Submission ref: (\d+)")
LABELS = ("Submission Ref", "Status", "Error", "Public Score", "Private Score", "Description", "Submission Date")
UNREAD_TRIES = 4  # denied or not-found answers in a row while waiting for a score, before "couldn't read"


def submission_message(train_config: dict, decision: dict) -> str:
    """What the submission says: model, size, folds, epochs and the decision rule chosen."""
    return (
        f"{train_config['model']} {train_config['image_size']}px folds {len(train_config['folds'])}/"
        f"{train_config['n_folds']} epochs {train_config['epochs']} rule {decision.get('chosen', '?')}"
    )


def version_tag(kernel: Kernel, version: int) -> str:
    """The end of every submission's description: how a submission is found again on Kaggle."""
    return f"[{kernel.slug} v{version}]"


def parse_submission(text: str) -> dict[str, str]:
    """``kaggle competitions submission REF``'s block: one ``Label: value`` a line, a value that spans lines
    (a scoring error) continued on indented lines; an empty value stays empty."""
    fields: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        if sep and label in LABELS:
            current, fields[label] = label, value.strip()
        elif current and line.startswith(" ") and line.strip():
            fields[current] = (fields[current] + "\n" + line.strip()).strip()
    return fields


def _rows(orch: Orchestrator, kernel: Kernel, version: int) -> list[dict]:
    return [s for s in orch.ledger.read()["submissions"] if s["kernel"] == kernel.id and s["version"] == version]


def find_on_kaggle(orch: Orchestrator, row: dict) -> dict | None:
    """The submission of ``row`` as ``kaggle competitions submissions`` lists it (by its description), or None."""
    answer = orch.cli.call("competitions", "submissions", orch.competition, "--format", "json")
    if answer.kind != "ok":
        raise BuildError(
            f"couldn't list the submissions of {orch.competition} to find {row['tag']} ({answer.why()}): nothing is "
            "submitted again until Kaggle says; the same command asks again"
        )
    try:
        listed = json.loads(answer.out[answer.out.index("[") :]) if "[" in answer.out else []
    except ValueError:
        listed = []
    return next((s for s in listed if str(s.get("description") or "").endswith(row["tag"])), None)


def resolve(orch: Orchestrator, row: dict) -> dict | None:
    """A submission whose answer wasn't read: found on Kaggle (its ref recorded, pending), or dropped."""
    found = find_on_kaggle(orch, row)
    if found is None:
        print(f"{row['kernel']} v{row['version']}: Kaggle lists no submission {row['tag']}: it wasn't made")
        with orch.ledger.change() as data:
            data["submissions"] = [s for s in data["submissions"] if s.get("id") != row["id"]]
        return None
    ref = str(found.get("ref"))
    orch.ledger.update_submission({"id": row["id"]}, ref=ref, status="pending")
    print(f"{row['kernel']} v{row['version']}: Kaggle has it as submission {ref}: not submitting it again")
    return {**row, "ref": ref, "status": "pending"}


def submit(orch: Orchestrator, kernel: Kernel, *, version: int, message: str, wait_score: bool = True) -> dict:
    """``kaggle competitions submit -k``, once per version; then waits for the scores. Returns the ledger row."""
    for row in _rows(orch, kernel, version):
        if row.get("status") in ("intended", "unknown") or (row.get("status") == "pending" and not row.get("ref")):
            resolve(orch, row)
    tag = version_tag(kernel, version)
    earlier = [r for r in _rows(orch, kernel, version) if r.get("status") != "refused"]
    if not earlier and not orch.force:  # the ledger doesn't know one (lost, a fresh clone): Kaggle may
        found = find_on_kaggle(orch, {"tag": tag})
        if found is not None:
            row = {"id": uuid.uuid4().hex[:12], "ref": str(found.get("ref")), "kernel": kernel.id, "version": version}
            row.update(tag=tag, message=found.get("description"), status="pending", found_on_kaggle=True)
            orch.ledger.record_submission(row)
            print(f"{kernel.id} v{version}: Kaggle has it as submission {row['ref']} already (the ledger didn't)")
            earlier = [row]
    if earlier and not orch.force:
        row = earlier[-1]
        if row.get("status") == "pending":
            print(f"{kernel.id} v{version} was submitted before (ref {row['ref']}): waiting for its score")
            return wait_for_score(orch, row) if wait_score else row
        raise BuildError(
            f"{kernel.id} version {version} was submitted already (ref {row['ref']}, {row.get('status')}, public "
            f"{row.get('public', '?')}): --force submits it again and spends one of today's submissions"
        )
    description = f"{message} {tag}"
    row = {"id": uuid.uuid4().hex[:12], "ref": "", "kernel": kernel.id, "version": version, "message": description}
    row.update(tag=tag, submitted_at=time.time(), status="intended")
    args = ["competitions", "submit", orch.competition, "-k", kernel.id, "-v", str(version)]
    with no_interrupt():
        orch.ledger.record_submission(row)
        answer = orch.cli.once(*args, "-f", "submission.csv", "-m", description)
        ref = REF.search(answer.out)
        if ref:
            row.update(ref=ref.group(1), status="pending")
        elif answer.rc == 0:  # accepted with no ref line (the server's ref was 0): look it up
            row.update(status="unknown")
        elif answer.kind in ("transient", "auth") or answer.rc == 124:  # the answer may be lost: Kaggle knows
            row.update(status="unknown", why=answer.why())
        else:
            row.update(status="refused", why=answer.why())
        orch.ledger.update_submission({"id": row["id"]}, **{k: row[k] for k in ("ref", "status")})
    if row["status"] == "unknown":
        print(f"kaggle competitions submit: {answer.why()}; asking Kaggle whether it took {tag}", flush=True)
        found = resolve(orch, row)
        if found is None:
            raise BuildError(
                f"kaggle competitions submit {kernel.id} version {version}: {answer.why()}; Kaggle lists no such "
                "submission: the same command submits it"
            )
        row = found
    elif answer.rc != 0:
        raise BuildError(f"kaggle competitions submit refused {kernel.id} version {version}: {answer.why()}")
    else:
        print(answer.out.strip(), flush=True)
    return wait_for_score(orch, row) if wait_score and row["ref"] else row


def wait_for_score(orch: Orchestrator, row: dict) -> dict:
    """Polls ``kaggle competitions submission REF`` until scored; a scoring error prints its reason (all its
    lines). Denied or not-found answers in a row stop the wait with "couldn't read", never silently."""
    interval, unread = orch.poll, 0
    while True:
        answer = orch.cli.call("competitions", "submission", row["ref"])
        if answer.kind != "ok":
            unread += 1
            if unread >= UNREAD_TRIES:
                raise BuildError(
                    f"couldn't read submission {row['ref']} ({answer.why()}, {unread} times): the same command "
                    "resumes the wait"
                )
        else:
            unread = 0
        fields = parse_submission(answer.out) if answer.kind == "ok" else {}
        status = fields.get("Status", "")
        if status.endswith("ERROR"):
            error = fields.get("Error") or "no reason given"
            orch.ledger.update_submission({"ref": row["ref"]}, status="error", error=error)
            raise BuildError(f"submission {row['ref']} failed scoring: {error}")
        if status.endswith("COMPLETE") and fields.get("Public Score"):
            scores = {"public": fields["Public Score"], "private": fields.get("Private Score", "")}
            orch.ledger.update_submission({"ref": row["ref"]}, status="complete", **scores)
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
    try:
        row = submit(orch, kernel, version=version, message="probe: sample_submission.csv", wait_score=False)
    except BuildError as e:
        if "was submitted already" in str(e):
            row = [r for r in _rows(orch, kernel, version) if r.get("status") != "refused"][-1]
        else:
            print(f"probe: {competition} does NOT accept a late kernel submission. The CLI said:\n{e}")
            return 1
    print(f"probe: {competition} accepts a late kernel submission (ref {row['ref']}): the GPU runs can be scored")
    return 0


def _describe(status: str) -> str:
    return "not pushed yet" if status == NOT_PUSHED else status
