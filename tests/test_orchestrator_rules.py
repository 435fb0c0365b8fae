"""The orchestrator's reading of Kaggle's answers, in-process and fast: a scripted CLI plays each answer the field
has shown, and the clock is moved by hand. (tests/test_kaggle_field.py drives the same through the real CLI.)"""

import json
import time

import pytest

from kernel_build import orchestrate
from kernel_build.kaggle_cli import Answer, CredentialsGone, KaggleCli, KaggleUnavailable
from kernel_build.kernel import Build, BuildError, Kernel
from kernel_build.ledger import Ledger, ledger_dir
from kernel_build.orchestrate import HIDDEN, NOT_PUSHED, Orchestrator

EMPTY = Answer(0, "", "")
DENIED = Answer(1, "", "Cannot access kernel 'me/imet-k' (Permission 'kernels.get' was denied). The most likely")


def _status(word: str) -> Answer:
    return Answer(0, f'me/imet-k has status "KernelWorkerStatus.{word}"\n', "")


class ScriptedCli(KaggleCli):
    """Answers ``kernels status`` from a script (the last answer repeats); every other call answers ``other``."""

    def __init__(self, statuses, other=EMPTY):
        self.timeout, self.tries, self.backoff, self.max_backoff = 1.0, 3, 0.0, 0.0
        self.sleep = lambda s: None
        self.statuses, self.other, self.calls = list(statuses), other, []

    def once(self, *args, timeout=None):
        self.calls.append(args)
        if args[:2] == ("kernels", "status"):
            return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return self.other(args) if callable(self.other) else self.other


@pytest.fixture
def kernel(tmp_path):
    folder = tmp_path / "build" / "imet-k"
    folder.mkdir(parents=True)
    (folder / "imet-k.py").write_text("print('hi')\n")
    meta = {"id": "me/imet-k", "title": "imet-k", "code_file": "imet-k.py", "enable_gpu": True}
    (folder / "kernel-metadata.json").write_text(json.dumps(meta))
    return Kernel("train", "me/imet-k", "imet-k", folder)


def _orch(tmp_path, kernel, cli, **kw):
    return Orchestrator(
        Build((kernel,)), competition="imet-2019-fgvc6", runs_dir=tmp_path / "runs", poll=0.0, cli=cli, **kw
    )


def _pushed(orch, kernel, *, version=1, ago=0.0, **fields):
    orch.ledger.record_push(
        kernel.id, version=version, content_hash=orchestrate.content_hash(kernel), gpu=True, status_before=None
    )
    orch.ledger.update_latest(kernel.id, pushed_at=time.time() - ago, **fields)


def test_a_denied_status_with_no_push_on_record_means_never_pushed(tmp_path, kernel):
    orch = _orch(tmp_path, kernel, ScriptedCli([DENIED]))
    assert orch.observe(kernel.id) == NOT_PUSHED
    assert orch.next_step(kernel) == "push"


def test_a_denied_status_just_after_a_first_push_means_not_visible_yet_then_a_slug_hint(tmp_path, kernel):
    orch = _orch(tmp_path, kernel, ScriptedCli([DENIED]), visibility_s=300)
    _pushed(orch, kernel, ago=10)
    assert orch.observe(kernel.id) == HIDDEN
    _pushed(orch, kernel, ago=301)
    with pytest.raises(BuildError, match="still denied 5 min after its first push: Kaggle names a new kernel"):
        orch.observe(kernel.id)


def test_denials_in_a_row_for_a_kernel_seen_before_mean_the_login_is_gone(tmp_path, kernel):
    cli = ScriptedCli([DENIED])
    orch = _orch(tmp_path, kernel, cli)
    _pushed(orch, kernel, visible=True)
    with pytest.raises(CredentialsGone, match="keep running; the same command resumes"):
        orch.observe(kernel.id)
    assert sum(1 for c in cli.calls if c[:2] == ("kernels", "status")) == 4


def test_one_denial_among_answers_for_a_seen_kernel_is_only_retried(tmp_path, kernel):
    orch = _orch(tmp_path, kernel, ScriptedCli([DENIED, _status("RUNNING")]))
    _pushed(orch, kernel, visible=True)
    assert orch.observe(kernel.id) == "RUNNING"
    assert orch.ledger.latest(kernel.id)["seen_active"]


def test_transient_answers_are_retried_then_given_up(tmp_path, kernel):
    busy = Answer(1, "", "503 Server Error: Service Unavailable\n\nThis is a problem on Kaggle's side")
    orch = _orch(tmp_path, kernel, ScriptedCli([busy, busy, _status("QUEUED")]))
    assert orch.observe(kernel.id) == "QUEUED"  # two retries, then an answer
    orch = _orch(tmp_path, kernel, ScriptedCli([busy]))
    with pytest.raises(KaggleUnavailable, match="failed 3 times: 503 Server Error"):
        orch.observe(kernel.id)


def test_a_final_status_counts_only_once_it_is_this_pushs(tmp_path, kernel):
    no_marker = ScriptedCli([_status("COMPLETE")])
    orch = _orch(tmp_path, kernel, no_marker)
    _pushed(orch, kernel, version=2, status_before="COMPLETE")
    assert not orch.is_ours(kernel.id, "COMPLETE")  # the previous run's, still answered
    assert orch.is_ours(kernel.id, "ERROR")  # not what it said before the push: this run's
    first = _orch(tmp_path / "other", kernel, no_marker)
    _pushed(first, kernel, version=1)
    assert first.is_ours(kernel.id, "COMPLETE")  # a first version has no previous run


def test_a_run_that_ended_unseen_is_found_by_its_versions_marker(tmp_path, kernel):
    def output(args):
        folder = args[args.index("-p") + 1]
        (orchestrate.Path(folder) / "run_status.json").write_text('{"ok": true}')
        return Answer(0, "", "")

    orch = _orch(tmp_path, kernel, ScriptedCli([_status("COMPLETE")], other=output))
    _pushed(orch, kernel, version=3, status_before="COMPLETE")
    assert orch.is_ours(kernel.id, "COMPLETE")
    assert orch.ledger.latest(kernel.id)["ended_unseen"]


def test_a_previous_runs_status_past_the_stale_bound_stops_with_a_message(tmp_path, kernel):
    orch = _orch(tmp_path, kernel, ScriptedCli([_status("COMPLETE")]), stale_s=60)
    _pushed(orch, kernel, version=2, ago=61, status_before="COMPLETE")
    with pytest.raises(BuildError, match="still answers COMPLETE of another run"):
        orch.wait([kernel])


def test_the_wait_stops_past_the_session_limit(tmp_path, kernel, monkeypatch):
    monkeypatch.setattr(orchestrate, "QUEUE_MARGIN_S", 0)
    orch = _orch(tmp_path, kernel, ScriptedCli([_status("RUNNING")]), budgets_h={kernel.id: 1.0})
    _pushed(orch, kernel, ago=3600 + orchestrate.SESSION_MARGIN_S + 1)
    with pytest.raises(BuildError, match="past its session limit"):
        orch.wait([kernel])


@pytest.mark.parametrize(
    "marker, why",
    [
        (None, "COMPLETE, but its output has no run_status.json: the script crashed"),
        ({"ok": False, "folds_left": [3, 4]}, r"folds left \[3, 4\]"),
    ],
)
def test_complete_without_an_ok_marker_fails_and_says_what_to_do(tmp_path, kernel, marker, why):
    def output(args):
        folder = orchestrate.Path(args[args.index("-p") + 1])
        if marker is not None and "output" in args:
            (folder / "run_status.json").write_text(json.dumps(marker))
        (folder / "imet-k.log").write_text(json.dumps([{"data": "Traceback (most recent call last):\n"}]))
        return Answer(0, "", "")

    orch = _orch(tmp_path, kernel, ScriptedCli([_status("COMPLETE")], other=output))
    _pushed(orch, kernel, seen_active=True)
    with pytest.raises(BuildError, match=why) as err:
        orch.wait([kernel])
    assert ("resume_from" in str(err.value)) == (marker is not None)
    assert orch.ledger.latest(kernel.id)["verdict"] == "failed"


def test_a_marker_holding_just_ok_true_is_done(tmp_path, kernel):
    def output(args):
        (orchestrate.Path(args[args.index("-p") + 1]) / "run_status.json").write_text('{"ok": true}')
        return Answer(0, "", "")

    orch = _orch(tmp_path, kernel, ScriptedCli([_status("COMPLETE")], other=output))
    _pushed(orch, kernel, seen_active=True)
    assert orch.wait([kernel]) == [kernel.id]
    assert orch.next_step(kernel) == "skip"


def test_the_ledger_is_written_atomically_and_imports_the_old_pushes_file(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "pushes.json").write_text(json.dumps({"me/k": {"version": 4, "pushed_at": 1.0, "seen_active": True}}))
    ledger = Ledger(ledger_dir(runs), legacy=runs)
    assert ledger.latest("me/k")["version"] == 4
    with ledger.change() as data:
        data["plan"] = {"command": "push all"}
    assert json.loads((tmp_path / ".kaggle-ledger" / "ledger.json").read_text())["plan"] == {"command": "push all"}
    assert not list((tmp_path / ".kaggle-ledger").glob("*.tmp"))


def test_the_submit_kernel_runs_again_when_a_train_kernel_it_reads_has_a_new_version(tmp_path, kernel):
    meta = json.loads(kernel.metadata_path.read_text())
    kernel.metadata_path.write_text(json.dumps({**meta, "kernel_sources": ["me/imet-train"]}))
    orch = _orch(tmp_path, kernel, ScriptedCli([_status("COMPLETE")]))
    orch.ledger.record_push("me/imet-train", version=1, content_hash="a", gpu=True, status_before=None)
    _pushed(orch, kernel, verdict="ok")
    orch.ledger.update_latest(kernel.id, inputs={"me/imet-train": 1})
    assert orch.next_step(kernel) == "skip"  # the same code, reading the same train version
    orch.ledger.record_push("me/imet-train", version=2, content_hash="b", gpu=True, status_before="COMPLETE")
    assert orch.next_step(kernel) == "push"  # the same code, but its input changed
