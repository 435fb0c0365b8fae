"""Kaggle is the record (issue 25), in-process and fast: a scripted Kaggle answers each CLI command as the 2.2.5 CLI
prints it, and each finding of the review is played against the orchestrator, the ledger and the submission
steps. (tests/test_kaggle_field.py drives the same through the real CLI against tests/fake_kaggle.py.)"""

import json
import os
import signal
import time
from pathlib import Path

import pytest

from kernel_build import leaderboard, ledger, orchestrate
from kernel_build.kaggle_cli import Answer, KaggleCli
from kernel_build.kernel import Build, BuildError, Kernel
from kernel_build.ledger import Ledger, ledger_dir
from kernel_build.orchestrate import NOT_PUSHED, Orchestrator, ReadFailed

CODE = "CONFIG = dict(epochs=8)\nprint('train')\n"
DENIED = Answer(1, "", "Cannot access kernel 'me/imet-k' (Permission 'kernels.get' was denied). The most likely")
NOT_FOUND = Answer(
    1,
    "",
    "Notebook not found: me/imet-k\n\nThe resource was not found.\nTo search for one, try 'kaggle search <query>'.",
)
FORBIDDEN = Answer(1, "", "403 Client Error: Forbidden for url: https://storage.googleapis.com/x/run_status.json")
LOST = Answer(1, "", "Gateway Timeout\n\nThis is a problem on Kaggle's side, not with your command.")
RATE_LIMITED = Answer(1, "", "Too many requests: slow down\n\nYou have been rate limited. Wait a little while before")


class Kaggle(KaggleCli):
    """A scripted Kaggle: versions with their source, status and marker; submissions; every call recorded.

    ``script[(group, command)]`` may hold answers to play first (then the model answers)."""

    def __init__(self, kid="me/imet-k"):
        self.timeout, self.tries, self.backoff, self.max_backoff = 1.0, 3, 0.0, 0.0
        self.sleep = lambda s: None
        self.kid, self.versions, self.submissions, self.calls, self.script = kid, [], [], [], {}
        self.push_answer = None  # what a push prints (None: success); the version is made unless refused

    def add_version(self, source=CODE, status="COMPLETE", marker=True):
        self.versions.append({"source": source, "status": status, "marker": marker})

    def once(self, *args, timeout=None):
        self.calls.append(args)
        queue = self.script.get(args[:2])
        if queue:
            return queue.pop(0)
        return getattr(self, "_" + "_".join(a.replace("-", "_") for a in args[:2]))(args)

    def _version(self, ref):
        parts = ref.split("/")
        if "/".join(parts[:2]) != self.kid or not self.versions:
            return None
        n = int(parts[2]) if len(parts) > 2 else len(self.versions)
        return self.versions[n - 1] if 0 < n <= len(self.versions) else None

    def _kernels_status(self, args):
        v = self._version(args[2])
        if v is None:
            return NOT_FOUND
        return Answer(0, f'{args[2]} has status "KernelWorkerStatus.{v["status"]}"\n', "")

    def _kernels_pull(self, args):
        v = self._version(args[2])
        if v is None:
            return NOT_FOUND
        Path(args[args.index("-p") + 1], "imet-k.py").write_text(v["source"])
        return Answer(0, "Source code downloaded to x\n", "")

    def _kernels_output(self, args):
        v = self._version(args[2])
        if v is None:
            return NOT_FOUND
        folder = Path(args[args.index("-p") + 1])
        if v["status"] == "COMPLETE" and v["marker"]:  # True: an end marker of an earlier release; a dict: that one
            marker = v["marker"] if isinstance(v["marker"], dict) else {"ok": True}
            (folder / "run_status.json").write_text(json.dumps(marker))
        return Answer(0, "", "")

    def _kernels_logs(self, args):
        return Answer(0, "[]", "")

    def _kernels_push(self, args):
        if self.push_answer is not None and self.push_answer.rc == 0 and "error" in self.push_answer.out:
            return self.push_answer
        self.add_version(status="QUEUED", marker=False)
        n = len(self.versions)
        return self.push_answer or Answer(0, f"Kernel version {n} successfully pushed.  Please check progress", "")

    def _competitions_submit(self, args):
        description = args[args.index("-m") + 1]
        self.submissions.insert(0, {"ref": 4001 + len(self.submissions), "description": description})
        return Answer(0, f"Submission ref: {self.submissions[0]['ref']}\nSuccessfully submitted to iMet\n", "")

    def _competitions_submissions(self, args):
        return Answer(0, json.dumps([{**s, "status": "SubmissionStatus.PENDING"} for s in self.submissions]), "")

    def _competitions_submission(self, args):
        return Answer(0, f"Submission Ref: {args[2]}\nStatus:          COMPLETE\nPublic Score:    0.6\n", "")

    def pushes(self):
        return [c for c in self.calls if c[:2] == ("kernels", "push")]


@pytest.fixture
def kernel(tmp_path):
    folder = tmp_path / "build" / "imet-k"
    folder.mkdir(parents=True)
    (folder / "imet-k.py").write_text(CODE)
    meta = {"id": "me/imet-k", "title": "imet-k", "code_file": "imet-k.py", "enable_gpu": True}
    (folder / "kernel-metadata.json").write_text(json.dumps(meta))
    return Kernel("train", "me/imet-k", "imet-k", folder)


def _orch(tmp_path, kernel, cli, **kw):
    kw.setdefault("poll", 0.0)
    kw.setdefault("sleep", lambda s: None)
    return Orchestrator(Build((kernel,)), competition="imet-2019-fgvc6", runs_dir=tmp_path / "runs", cli=cli, **kw)


# -- finding 1 / requirement 3: a failed read is not a verdict ---------------------------------------------------
@pytest.mark.parametrize("failure", [FORBIDDEN, NOT_FOUND, DENIED])
def test_a_failed_read_of_the_marker_is_retried_then_reported_never_recorded_as_a_crash(tmp_path, kernel, failure):
    cli = Kaggle()
    cli.add_version()
    cli.script[("kernels", "output")] = [failure] * orchestrate.READ_TRIES
    orch = _orch(tmp_path, kernel, cli)
    with pytest.raises(ReadFailed, match="couldn't read me/imet-k/1's run_status.json.*not counted as failed"):
        orch.settle(kernel)
    assert orch.ledger.latest(kernel.id)["verdict"] is None  # nothing recorded: the next look reads it again
    assert orch.next_step(kernel) == "skip" and not cli.pushes()  # read now: complete, nothing pushed


def test_the_marker_read_denied_once_is_read_again(tmp_path, kernel):
    cli = Kaggle()
    cli.add_version()
    cli.script[("kernels", "output")] = [FORBIDDEN]
    orch = _orch(tmp_path, kernel, cli)
    assert orch.settle(kernel)["verdict"] == "ok"


def test_only_a_listing_without_the_marker_means_a_crash(tmp_path, kernel):
    cli = Kaggle()
    cli.add_version(marker=False)
    orch = _orch(tmp_path, kernel, cli)
    assert orch.settle(kernel)["verdict"] == "failed"


# -- finding 2 / requirement 2: intent before action ------------------------------------------------------------
@pytest.mark.parametrize("lost", [LOST, Answer(124, "", "kaggle kernels push timed out after 300 s")])
def test_a_push_whose_answer_is_lost_is_found_on_kaggle_and_not_pushed_again(tmp_path, kernel, lost):
    cli = Kaggle()
    cli.push_answer = lost  # the server made the version; the answer never came back
    orch = _orch(tmp_path, kernel, cli)
    assert orch.next_step(kernel) == "push"
    assert orch.push_one(kernel) == 1
    assert orch.ledger.latest(kernel.id)["found_after_lost_answer"] and orch.ledger.intent(kernel.id) is None
    assert orch.next_step(kernel) == "wait" and len(cli.pushes()) == 1


def test_an_intent_left_by_a_killed_push_is_resolved_before_pushing_again(tmp_path, kernel):
    cli = Kaggle()
    cli.add_version()  # the killed command's push got there, and ran
    orch = _orch(tmp_path, kernel, cli)
    source = orchestrate.code_source_hash(kernel)
    orch.ledger.set_intent(kernel.id, state="intended", at=time.time(), known=0, source=source, hash="h", gpu=True)
    orch.ledger.update_latest(kernel.id)
    assert orch.next_step(kernel) in ("skip", "push")  # its hash "h" is not this build's: a new push is allowed
    assert orch.ledger.latest(kernel.id)["version"] == 1 and orch.ledger.intent(kernel.id) is None
    empty = _orch(tmp_path / "b", kernel, Kaggle())
    empty.ledger.set_intent(kernel.id, state="intended", at=1.0, known=0, source=source, hash="h", gpu=True)
    assert empty.next_step(kernel) == "push" and empty.ledger.intent(kernel.id) is None  # never got there


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_sigterm_sighup_and_sigint_wait_until_the_push_is_recorded(tmp_path, kernel, sig):
    cli = Kaggle()
    orch = _orch(tmp_path, kernel, cli)
    delivered = []
    previous = signal.signal(sig, lambda *_: delivered.append(orch.ledger.latest(kernel.id)))
    real = cli._kernels_push

    def push_then_signal(args):
        os.kill(os.getpid(), sig)  # the terminal closes while the CLI call runs
        assert not delivered  # held
        return real(args)

    cli._kernels_push = push_then_signal
    try:
        orch.next_step(kernel)
        if sig == signal.SIGINT:  # Ctrl-C comes back as KeyboardInterrupt, once the version is on record
            with pytest.raises(KeyboardInterrupt):
                orch.push_one(kernel)
            delivered.append(orch.ledger.latest(kernel.id))
        else:
            orch.push_one(kernel)
    finally:
        signal.signal(sig, previous)
    assert delivered and delivered[0]["version"] == 1  # delivered after the version was on record


def test_a_submission_whose_answer_is_lost_is_found_by_its_description_not_made_twice(tmp_path, kernel):
    cli = Kaggle()
    cli.add_version()
    orch = _orch(tmp_path, kernel, cli)
    real = cli._competitions_submit
    cli._competitions_submit = lambda args: (real(args), LOST)[1]  # taken, then the answer is lost
    row = leaderboard.submit(orch, kernel, version=1, message="m")
    assert row["ref"] == "4001" and row["status"] == "complete"
    assert cli.submissions[0]["description"] == "m [imet-k v1]"
    with pytest.raises(BuildError, match="was submitted already"):
        leaderboard.submit(orch, kernel, version=1, message="m")
    assert len(cli.submissions) == 1


def test_an_accepted_submission_with_no_ref_line_is_not_recorded_as_refused(tmp_path, kernel):  # finding 12
    cli = Kaggle()
    cli.add_version()
    orch = _orch(tmp_path, kernel, cli)
    real = cli._competitions_submit
    cli._competitions_submit = lambda args: (real(args), Answer(0, "Successfully submitted to iMet\n", ""))[1]
    row = leaderboard.submit(orch, kernel, version=1, message="probe", wait_score=False)
    assert row["ref"] == "4001" and row["status"] == "pending"
    assert [s["status"] for s in orch.ledger.read()["submissions"]] == ["pending"]


def test_a_refused_submission_is_recorded_as_refused(tmp_path, kernel):
    cli = Kaggle()
    cli.add_version()
    cli.script[("competitions", "submit")] = [Answer(1, "", "400 Client Error: Late submission is unavailable")]
    orch = _orch(tmp_path, kernel, cli)
    with pytest.raises(BuildError, match="refused me/imet-k version 1: 400 Client Error: Late submission"):
        leaderboard.submit(orch, kernel, version=1, message="m")
    assert [s["status"] for s in orch.ledger.read()["submissions"]] == ["refused"]


# -- finding 3 / requirement 1: a lost ledger ---------------------------------------------------------------------
def test_with_no_ledger_kaggle_is_asked_and_a_run_complete_on_this_content_is_skipped(tmp_path, kernel):
    cli = Kaggle()
    cli.add_version(source="old code")
    cli.add_version()  # version 2: this build, complete
    orch = _orch(tmp_path, kernel, cli)
    assert orch.next_step(kernel) == "skip" and not cli.pushes()
    latest = orch.ledger.latest(kernel.id)
    assert latest["version"] == 2 and latest["verdict"] == "ok" and latest["from_kaggle"]
    assert orch.ledger.path.parent == tmp_path / ".kaggle-ledger"  # beside runs/, not in it


def test_other_code_on_kaggle_is_pushed_over(tmp_path, kernel):
    cli = Kaggle()
    cli.add_version(source="other code")
    assert _orch(tmp_path, kernel, cli).next_step(kernel) == "push"


def test_a_corrupt_ledger_is_set_aside_and_kaggle_asked(tmp_path, kernel):
    cli = Kaggle()
    cli.add_version()
    orch = _orch(tmp_path, kernel, cli)
    orch.ledger.dir.mkdir(parents=True)
    orch.ledger.path.write_text("")  # what a power cut left before fsync
    assert orch.next_step(kernel) == "skip" and not cli.pushes()
    assert list(orch.ledger.dir.glob("ledger.json.corrupt-*"))


def test_the_ledger_is_written_with_fsync_of_the_file_and_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(ledger.os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_mode), real(fd)))
    with Ledger(tmp_path / "l").change() as data:
        data["plan"] = {"x": 1}
    assert len(synced) == 2 and any(os.path.stat.S_ISDIR(mode) for mode in synced)


# -- requirement 1: a version's run_status.json says what ran (its content hash, and the submit kernel's inputs) ----
NO_SOURCE = [
    Answer(0, "Source code downloaded to x\n", ""),  # answered, but no code file came
    Answer(1, "", "400 Client Error: Bad Request for url: https://www.kaggle.com/api/v1/kernels/pull"),
]


@pytest.mark.parametrize("pull", NO_SOURCE)
def test_a_version_whose_source_cant_be_pulled_is_known_by_its_marker(tmp_path, kernel, pull):
    cli = Kaggle()
    cli.add_version(source="unseen", marker={"ok": True, "content_hash": orchestrate.content_hash(kernel)})
    cli.script[("kernels", "pull")] = [pull]
    orch = _orch(tmp_path, kernel, cli)
    assert orch.next_step(kernel) == "skip" and not cli.pushes()
    latest = orch.ledger.latest(kernel.id)
    assert latest["version"] == 1 and latest["source"] is None and latest["hash"] == orchestrate.content_hash(kernel)
    cli.versions[0]["marker"] = {"ok": True, "content_hash": "0123456789abcdef"}  # another build's run
    cli.calls.clear()
    orch.ledger.path.unlink()
    cli.script[("kernels", "pull")] = [pull]
    assert orch.next_step(kernel) == "push"


def test_the_marker_tells_a_version_of_the_same_code_but_other_content(tmp_path, kernel):
    """Same code (its pulled source is this build's), other metadata: only its run_status.json tells."""
    cli = Kaggle()
    cli.add_version(marker={"ok": True, "content_hash": "0123456789abcdef"})
    orch = _orch(tmp_path, kernel, cli)
    assert orch.next_step(kernel) == "push"
    assert orch.ledger.latest(kernel.id)["marker"]["content_hash"] == "0123456789abcdef"
    cli.versions[0]["marker"]["content_hash"] = orchestrate.content_hash(kernel)
    orch.ledger.path.unlink()
    assert orch.next_step(kernel) == "skip" and not cli.pushes()


@pytest.mark.parametrize(
    "read, step",
    [
        ({"content_hash": "a", "finished_at": "2026-12-06T10:00:00Z"}, "skip"),  # the train run it should read
        ({"content_hash": "a", "finished_at": "2026-12-05T09:00:00Z"}, "push"),  # an earlier run of that code
        ({"content_hash": "b", "finished_at": None}, "push"),  # no end time to compare: other content
        ({"content_hash": "a", "finished_at": None}, "skip"),
        ({"missing": True}, "push"),  # it read an output without an end marker
        (None, "push"),  # it didn't read that kernel at all
    ],
)
def test_a_submit_run_found_on_kaggle_is_checked_against_the_train_run_its_marker_says_it_read(
    tmp_path, kernel, read, step
):
    meta = json.loads(kernel.metadata_path.read_text())
    kernel.metadata_path.write_text(json.dumps({**meta, "kernel_sources": ["me/imet-train"]}))
    inputs = {} if read is None else {"me/imet-train": {"kernel": "me/imet-train", **read}}
    marker = {"ok": True, "content_hash": orchestrate.content_hash(kernel), "inputs": inputs}
    cli = Kaggle()
    cli.add_version(marker=marker)
    orch = _orch(tmp_path, kernel, cli)
    train_marker = {"ok": True, "content_hash": "a", "finished_at": "2026-12-06T10:00:00Z"}
    orch.ledger.record_push(
        "me/imet-train", version=3, content_hash="a", gpu=True, status_before=None, marker=train_marker, verdict="ok"
    )
    if read is not None and read.get("finished_at") is None and "content_hash" in read:
        orch.ledger.update_latest("me/imet-train", marker={"ok": True})  # a train run of an earlier release
    assert orch.next_step(kernel) == step


def test_what_the_submit_kernel_records_of_each_train_output_it_reads(tmp_path):
    """imet_utils.run_status: a train output's own run_status.json gives its content hash and end time; one
    without it (or with a broken one) is recorded as such, never a crash; run_status.json carries both."""
    from imet_utils.run_status import input_status, write_run_status

    train = tmp_path / "train"
    train.mkdir()
    assert input_status(train, "me/imet-train") == {"kernel": "me/imet-train", "missing": True}
    (train / "run_status.json").write_text("{not json")
    assert "run_status.json" in input_status(train, "me/imet-train")["unreadable"]
    write_run_status(train, ok=True, kernel="train", stages={}, content_hash="a" * 16)
    read = input_status(train, "me/imet-train")
    assert read["content_hash"] == "a" * 16 and read["ok"] and read["finished_at"].endswith("Z")
    out = tmp_path / "submit"
    out.mkdir()
    path = write_run_status(out, ok=True, kernel="submit", stages={}, content_hash="b" * 16, inputs={"k": read})
    assert json.loads(path.read_text())["inputs"] == {"k": read}


# -- finding 4: ledgers of earlier releases ------------------------------------------------------------------------
def test_an_entry_from_pushes_json_without_a_hash_is_checked_against_kaggle(tmp_path, kernel):
    cli = Kaggle()
    cli.add_version()
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "pushes.json").write_text(json.dumps({kernel.id: {"version": 1, "pushed_at": 1.0, "seen_active": True}}))
    orch = _orch(tmp_path, kernel, cli)
    assert orch.ledger.latest(kernel.id)["hash"] is None
    assert orch.next_step(kernel) == "skip" and not cli.pushes()


def test_a_submit_entry_without_inputs_is_not_pushed_again(tmp_path, kernel):
    meta = json.loads(kernel.metadata_path.read_text())
    kernel.metadata_path.write_text(json.dumps({**meta, "kernel_sources": ["me/imet-train"]}))
    cli = Kaggle()
    orch = _orch(tmp_path, kernel, cli)
    orch.ledger.record_push("me/imet-train", version=3, content_hash="a", gpu=True, status_before=None)
    with orch.ledger.change() as data:  # written by the release before inputs were recorded
        row = {"version": 1, "hash": orchestrate.content_hash(kernel), "pushed_at": 1.0, "verdict": "ok"}
        data["kernels"][kernel.id] = {"pushes": [row]}
    assert orch.next_step(kernel) == "skip" and not cli.pushes()
    assert orch.ledger.latest(kernel.id)["inputs"] == {"me/imet-train": 3}  # from now on compared


# -- finding 6: the GPU-session refusal ----------------------------------------------------------------------------
def test_the_gpu_limit_without_wait_says_nothing_was_pushed_and_with_wait_has_a_deadline(tmp_path, kernel):
    cli = Kaggle()
    cli.push_answer = Answer(0, "Kernel push error: Maximum batch GPU session count of 2 reached.\n", "")
    orch = _orch(tmp_path, kernel, cli)
    with pytest.raises(BuildError, match="nothing was pushed.*add --wait"):
        orch.push([kernel], wait=False)
    orch._refused_since = time.time() - 13 * 3600 - orchestrate.QUEUE_MARGIN_S
    with pytest.raises(BuildError, match="refused it for the GPU-session limit for 1[34].\\d h"):
        orch.push([kernel], wait=True)
    assert orch.ledger.latest(kernel.id) is None and orch.ledger.intent(kernel.id) is None


# -- findings 7 and 8: a JSON 429; 404 and 403 for a kernel never pushed -----------------------------------------
@pytest.mark.parametrize(
    "answer, kind",
    [(RATE_LIMITED, "transient"), (NOT_FOUND, "missing"), (DENIED, "denied"), (FORBIDDEN, "denied")],
)
def test_the_2_2_5_answers_are_classified(answer, kind):
    assert answer.kind == kind


@pytest.mark.parametrize("never", [NOT_FOUND, DENIED])
def test_404_and_403_both_mean_never_pushed_when_nothing_was(tmp_path, kernel, never):
    cli = Kaggle()
    cli.script[("kernels", "status")] = [never]
    orch = _orch(tmp_path, kernel, cli)
    assert orch.observe(kernel.id) == NOT_PUSHED
    assert orch.next_step(kernel) == "push"


def test_a_json_429_is_retried(tmp_path, kernel):
    cli = Kaggle()
    cli.add_version(status="RUNNING")
    cli.script[("kernels", "status")] = [RATE_LIMITED, RATE_LIMITED]
    orch = _orch(tmp_path, kernel, cli)
    assert orch.next_step(kernel) == "wait"


# -- finding 9: status and logs by version --------------------------------------------------------------------------
def test_status_and_logs_name_the_version(tmp_path, kernel):
    cli = Kaggle()
    cli.add_version(source="old")
    cli.add_version(status="ERROR")
    orch = _orch(tmp_path, kernel, cli)
    orch.ledger.record_push(kernel.id, version=2, content_hash="x", gpu=True, status_before="COMPLETE")
    assert orch.observe(kernel.id) == "ERROR"
    orch.conclude(kernel.id, "ERROR")
    asked = [c[2] for c in cli.calls if c[:2] in (("kernels", "status"), ("kernels", "logs"))]
    assert asked and all(a == "me/imet-k/2" for a in asked)


def test_a_server_that_doesnt_know_the_version_label_is_asked_for_the_kernel(tmp_path, kernel):
    cli = Kaggle()
    cli.add_version(status="RUNNING")
    cli.script[("kernels", "status")] = [NOT_FOUND]
    orch = _orch(tmp_path, kernel, cli)
    orch.ledger.record_push(kernel.id, version=1, content_hash="x", gpu=True, status_before=None)
    assert orch.observe(kernel.id) == "RUNNING"
    assert [c[2] for c in cli.calls] == ["me/imet-k/1", "me/imet-k"]


# -- finding 10: states read doubtfully -----------------------------------------------------------------------------
def test_cancel_requested_holds_the_gpu_and_new_script_holds_nothing(tmp_path, kernel):
    cli = Kaggle()
    cli.add_version(source="other", status="CANCEL_REQUESTED")
    orch = _orch(tmp_path, kernel, cli)
    assert orch.next_step(kernel) == "wait"  # its session may still run: no second one beside it
    assert orch.observe(kernel.id) in orchestrate.ACTIVE
    cli.versions[0]["status"] = "NEW_SCRIPT"
    assert _orch(tmp_path / "b", kernel, cli).next_step(kernel) == "push"


def test_the_failure_message_is_kept_with_the_verdict(tmp_path, kernel):
    cli = Kaggle()
    cli.add_version(status="ERROR")
    cli.script[("kernels", "status")] = [
        Answer(0, 'me/imet-k/1 has status "KernelWorkerStatus.ERROR"\nFailure message: "Out of memory\non GPU 0"\n', "")
    ]
    orch = _orch(tmp_path, kernel, cli)
    with pytest.raises(BuildError, match="failed on this same content"):
        orch.next_step(kernel)
    assert orch.ledger.latest(kernel.id)["why"] == "ended ERROR: Out of memory\non GPU 0"


# -- finding 11: the score parser -------------------------------------------------------------------------------------
def test_the_score_block_is_read_line_by_line():
    text = (
        "Submission Ref:  4001\nStatus:          ERROR\nError:           Submission is missing 12 ids\n"
        "                 and has 3 unknown ones\nPublic Score:    \nPrivate Score:   \nDescription:     m\n"
    )
    fields = leaderboard.parse_submission(text)
    assert fields["Error"] == "Submission is missing 12 ids\nand has 3 unknown ones"
    assert fields["Public Score"] == "" and fields["Private Score"] == ""


def test_an_unreadable_score_stops_the_wait_with_a_message(tmp_path, kernel):
    cli = Kaggle()
    cli.script[("competitions", "submission")] = [NOT_FOUND] * 10
    orch = _orch(tmp_path, kernel, cli)
    with pytest.raises(BuildError, match="couldn't read submission 4001"):
        leaderboard.wait_for_score(orch, {"ref": "4001", "kernel": kernel.id, "version": 1})


# -- finding 13 and requirement 1: no command needs another first ----------------------------------------------------
def test_a_run_that_ended_is_concluded_by_any_command_no_wait_needed(tmp_path, kernel):
    cli = Kaggle()
    orch = _orch(tmp_path, kernel, cli)
    orch.next_step(kernel)
    orch.push_one(kernel)
    cli.versions[0].update(status="COMPLETE", marker=True)  # it ran while nobody waited
    assert orch.settle(kernel)["verdict"] == "ok"


def test_the_ledger_lives_beside_runs(tmp_path):
    assert ledger_dir(tmp_path / "runs") == tmp_path / ".kaggle-ledger"


def test_a_denied_look_at_the_versions_never_counts_as_no_version(tmp_path, kernel):
    cli = Kaggle()
    cli.push_answer = LOST
    orch = _orch(tmp_path, kernel, cli)
    orch.next_step(kernel)
    cli.script[("kernels", "pull")] = [DENIED]
    cli.script[("kernels", "status")] = [Answer(0, 'me/imet-k has status "KernelWorkerStatus.QUEUED"', "")] + [
        DENIED
    ] * 9  # the login expired between the two calls
    with pytest.raises(ReadFailed, match="couldn't ask Kaggle for me/imet-k version 1"):
        orch.push_one(kernel)
    assert orch.ledger.intent(kernel.id)["state"] == "unknown"  # kept: asked again next time, not pushed again
    assert len(cli.pushes()) == 1


def test_a_run_of_other_code_found_on_kaggle_is_waited_for_then_this_build_is_pushed(tmp_path, kernel):
    cli = Kaggle()
    cli.add_version(source="other code", status="RUNNING", marker=False)

    def time_passes(seconds):
        for v in cli.versions:
            v.update(status="COMPLETE", marker=v["source"] == CODE)  # the other code crashed: no marker

    orch = _orch(tmp_path, kernel, cli, sleep=time_passes)
    orch.push([kernel], wait=True)
    latest = orch.ledger.latest(kernel.id)
    assert len(cli.pushes()) == 1 and latest["version"] == 2 and latest["verdict"] == "ok"
    assert orch.ledger.pushes(kernel.id)[0]["verdict"] == "failed"  # the other code's crash, recorded, not raised
