"""Kaggle as the field reports it (KAGGLE.md): 403 for a kernel never pushed and for a few seconds after a first
push, 503s, one GPU session at a time, crashes reported COMPLETE, expired logins, runs that end between polls;
and every step resumed after a stop. Each test drives the real kaggle CLI against tests/fake_kaggle.py."""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fake_kaggle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

from kernel_build.kaggle_cli import Answer, has_credentials  # noqa: E402

pytestmark = pytest.mark.slow

FIELD = dict(hidden_seconds=3.0, fail_every=5, gpu_limit=1, unknown_code=403)
KERNELS = [f"me/imet-2019-train-f{k}" for k in range(5)] + ["me/imet-2019-submit"]


@pytest.fixture(autouse=True)
def field_answers(request):
    """Every test here that drives the fake answers a kernel never pushed with 403, as the field does
    (tests/test_orchestrate.py runs against the 404 that earlier releases answered)."""
    if "repo" in request.fixturenames:
        fake_kaggle.configure(request.getfixturevalue("repo")[1], unknown_code=403)


def _server(env) -> dict:
    return json.loads((Path(env[fake_kaggle.STATE_ENV]) / "state.json").read_text())


def _versions(env) -> dict:
    return {kid: len(runs) for kid, runs in _server(env)["kernels"].items()}


def _popen(root, env, *args):
    command = [sys.executable, "-u", str(ROOT / "build_kernel.py"), *args[:1], "--metadata"]
    command += [str(root / "kernel-metadata.json"), "--out", str(root / "build"), "--runs", str(root / "runs")]
    command += ["--poll", "0.01", *args[1:]]
    return subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _interrupt_when(proc, marker: str) -> str:
    """Reads the run's output until a line holds ``marker``, then sends SIGINT; returns all it printed."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            proc.send_signal(signal.SIGINT)
            break
    seen.append(proc.stdout.read())
    proc.wait(timeout=120)
    return "".join(seen)


def test_probe_and_a_split_folds_run_finish_against_the_field(repo):
    root, env, run = repo
    fake_kaggle.configure(env, **FIELD)
    probe = run("probe")
    assert "probe: me/imet-probe-imet-2019-fgvc6 is not pushed yet" in probe.stdout  # the 403 of a new kernel
    assert "probe: imet-2019-fgvc6 accepts a late kernel submission" in probe.stdout
    push = run("push", "all", "--wait", "--split-folds")
    assert "NOT_VISIBLE_YET" in push.stdout  # denied for 3 s after each first push: waited, not failed
    assert "The service is currently unavailable.; retry 1 in" in push.stdout
    assert _server(env)["failed_reads"] > 0
    assert _server(env).get("max_gpu_active", 0) == 1
    assert all(_versions(env)[kid] == 1 for kid in KERNELS)
    pushes = [c for c in fake_kaggle.calls(env) if c.startswith("kernels push")]
    assert all(c.endswith("-t 42300") for c in pushes if "train" in c)  # 11.5 h budget + 15 min
    assert "GPU quota: 27.5 h left of 30 h" in push.stdout


def test_ctrl_c_after_the_first_fold_and_the_same_command_resumes(repo):
    root, env, run = repo
    fake_kaggle.configure(env, **FIELD)
    first = _interrupt_when(_popen(root, env, "push", "all", "--wait", "--split-folds"), "train-f0  COMPLETE")
    print(first)
    assert "stopped waiting; the kernels run on. The same command resumes" in first or "stopped;" in first
    assert "me/imet-2019-submit" not in _versions(env)
    again = run("push", "all", "--wait", "--split-folds")
    f0 = ("me/imet-2019-train-f0: complete on this content (version 1), skipped", "f0: version 1 was pushed before")
    assert any(line in again.stdout for line in f0)  # concluded before the stop, or concluded now
    assert all(_versions(env)[kid] == 1 for kid in KERNELS), _versions(env)
    assert max(_server(env)["max_active_versions"].values()) == 1
    assert _server(env).get("max_gpu_active", 0) == 1
    ledger = json.loads((root / ".kaggle-ledger" / "ledger.json").read_text())
    assert all(ledger["kernels"][kid]["pushes"][-1]["verdict"] == "ok" for kid in KERNELS)
    assert [r["id"] for r in ledger["plan"]["kernels"]] == KERNELS


def test_a_crash_reported_complete_fails_with_its_traceback_and_no_submit_push(repo):
    root, env, run = repo
    fake_kaggle.configure(env, crashes={"imet-2019-train": '  File "k.py", line 9, in <module>\nMemoryError: cache'})
    res = run("push", "all", "--wait", ok=False)
    assert "COMPLETE, but its output has no run_status.json: the script crashed" in res.stderr
    assert "    Traceback (most recent call last):" in res.stdout and "MemoryError: cache" in res.stdout
    assert "me/imet-2019-submit" not in _versions(env)
    again = run("push", "all", "--wait", ok=False)  # the same content again: refused, not a second GPU session
    assert "failed on this same content" in again.stderr and _versions(env)["me/imet-2019-train"] == 1


def test_submit_twice_makes_one_submission_and_an_interrupted_score_wait_resumes(repo):
    root, env, run = repo
    run("push", "all", "--wait")
    fake_kaggle.configure(env, score_polls=10_000)
    out = _interrupt_when(_popen(root, env, "submit"), "Successfully submitted")
    assert "Submission ref: 4000000" in out or "Successfully submitted" in out
    ledger = json.loads((root / ".kaggle-ledger" / "ledger.json").read_text())
    assert ledger["submissions"][0]["ref"] and ledger["submissions"][0]["status"] == "pending"
    fake_kaggle.configure(env, score_polls=0)
    resumed = run("submit")
    assert "was submitted before (ref" in resumed.stdout and "public 0.61234, private 0.60871" in resumed.stdout
    third = run("submit", ok=False)
    assert "was submitted already" in third.stderr and "--force" in third.stderr
    assert len(_server(env)["submissions"]) == 1


def test_a_scoring_error_prints_its_reason(repo):
    root, env, run = repo
    fake_kaggle.configure(env, scoring_errors={"imet-2019-submit": "Submission is missing 12 ids"})
    run("push", "all", "--wait")
    res = run("submit", ok=False)
    assert "failed scoring: Submission is missing 12 ids" in res.stderr


def test_pull_during_a_run_leaves_nothing_behind_and_after_it_needs_no_wait(repo):
    root, env, run = repo
    run("push")
    early = run("pull")
    assert "not pulled, its run is not complete" in early.stdout
    assert not (root / "runs" / "imet-2019-train").exists()
    fake_kaggle.configure(env, advance=10)  # the run ends while nobody waits: pull asks Kaggle (finding 13)
    later = run("pull")
    assert "(models left out)" in later.stdout and (root / "runs/imet-2019-train/v1/run_status.json").is_file()
    assert _server(env)["output_pages"] >= 2  # 20 files a page: the listing came in pages
    assert not list((root / "runs" / "imet-2019-train" / "v1").rglob("model"))
    models = run("pull", "--models")
    assert "models added" in models.stdout and list((root / "runs/imet-2019-train/v1").rglob("saved_model.pb"))
    one = run("pull", "--version", "1", ok=False)
    assert "--version names one kernel's version: add --kernel SLUG" in one.stderr


def test_expired_credentials_stop_the_wait_and_the_same_command_resumes(repo):
    root, env, run = repo
    run("push")
    run("status")  # seen once: from now on a denial is not "never pushed"
    fake_kaggle.configure(env, expired=True)
    res = run("wait", ok=False)
    assert "credentials are gone or expired" in res.stderr and "KAGGLE_API_TOKEN" in res.stderr
    assert "keep running" in res.stderr and "the same command resumes" in res.stderr
    fake_kaggle.configure(env, expired=False)
    again = run("wait")
    assert "me/imet-2019-train  COMPLETE" in again.stdout


def test_a_run_that_ends_between_two_polls_is_recognised_by_its_marker(repo):
    root, env, run = repo
    run("push", "--wait")
    fake_kaggle.configure(env, advance=10)  # a whole run passes between two polls: never seen queued or running
    second = run("push", "--wait", "--set", "epochs=3")
    assert "pushed me/imet-2019-train version 2" in second.stdout
    ledger = json.loads((root / ".kaggle-ledger" / "ledger.json").read_text())
    latest = ledger["kernels"]["me/imet-2019-train"]["pushes"][-1]
    assert latest["ended_unseen"] and latest["verdict"] == "ok" and not latest["seen_active"]


def test_the_quota_refuses_a_plan_it_cant_hold_unless_forced(repo):
    root, env, run = repo
    fake_kaggle.configure(env, quota_used_h=29.5)
    res = run("push", ok=False)
    assert "GPU hours but 0.5 h are left before the refresh" in res.stderr and _versions(env) == {}
    forced = run("push", "--force")
    assert "(pushed anyway: --force)" in forced.stdout and _versions(env) == {"me/imet-2019-train": 1}


def test_the_old_flags_still_work_with_a_note(repo):
    root, env, run = repo
    res = subprocess.run(
        [sys.executable, str(ROOT / "build_kernel.py"), "--plan", "--metadata", str(root / "kernel-metadata.json")],
        cwd=root,
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 0 and "plan:" in res.stdout
    assert "note: --plan is now the subcommand `plan`" in res.stderr


@pytest.mark.parametrize(
    "answer, kind",
    [
        (Answer(0, 'me/k has status "KernelWorkerStatus.RUNNING"', ""), "ok"),
        (Answer(1, "", "Cannot access kernel 'me/k' (Permission 'kernels.get' was denied). The most"), "denied"),
        (Answer(1, "Authentication required to call the Kaggle API.\n", ""), "auth"),
        (Answer(1, "", "503 Server Error: Service Unavailable\n\nThis is a problem on Kaggle's side"), "transient"),
        (Answer(1, "", "429 Client Error: Too Many Requests for url"), "transient"),
        (Answer(124, "", "kaggle kernels status timed out after 180 s"), "transient"),
        (Answer(1, "", "400 Client Error: Bad Request"), "error"),
    ],
)
def test_each_answer_is_classified(answer, kind):
    assert answer.kind == kind


@pytest.mark.parametrize(
    "env_vars, files",
    [
        ({"KAGGLE_API_TOKEN": "KGAT_x"}, []),
        ({"KAGGLE_USERNAME": "me", "KAGGLE_KEY": "k" * 32}, []),
        ({}, ["kaggle.json"]),
        ({}, ["access_token"]),
        ({}, ["credentials.json"]),  # what `kaggle auth login` writes
    ],
)
def test_every_credential_the_cli_takes_is_accepted(tmp_path, monkeypatch, env_vars, files):
    for key in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert not has_credentials()
    for key, value in env_vars.items():
        monkeypatch.setenv(key, value)
    for name in files:
        (tmp_path / ".kaggle").mkdir(exist_ok=True)
        (tmp_path / ".kaggle" / name).write_text("{}")
    assert has_credentials()


def _until_ok(run, *args, tries=3):
    """The same command, run again (at most twice more) until it exits 0; returns every run."""
    runs = []
    for _ in range(tries):
        runs.append(run(*args, ok=None))
        if runs[-1].returncode == 0:
            return runs
    raise AssertionError(f"{args} did not finish in {tries} runs")


def test_lost_answers_denied_reads_and_a_lost_ledger_never_do_anything_twice(repo):
    """Issue 25's field: the first push's and submission's answers are lost, the first read of each run's
    run_status.json is denied; then runs/ is deleted, then the ledger too: one version per kernel, one submission."""
    root, env, run = repo
    lost = {"SaveKernel": 1, "CreateCodeSubmission": 1}
    fake_kaggle.configure(env, **FIELD, lost_answers=lost, fail_downloads_once=["run_status.json"])
    pushed = "".join(r.stdout for r in _until_ok(run, "push", "all", "--wait"))
    assert "the push's answer was lost, but Kaggle has version 1 (this push's): not pushing it again" in pushed
    assert "couldn't read its run_status.json (403 Client Error: Forbidden" in pushed
    submitted = "".join(r.stdout for r in _until_ok(run, "submit"))
    assert "Kaggle has it as submission 40000001: not submitting it again" in submitted
    assert "public 0.61234" in submitted
    server = _server(env)
    assert server["lost"] == 2 and len(server["failed_downloads"]) == 2  # each run's marker denied once
    ledger = json.loads((root / ".kaggle-ledger" / "ledger.json").read_text())
    assert [p["verdict"] for e in ledger["kernels"].values() for p in e["pushes"]] == ["ok", "ok"]
    run("pull")
    shutil.rmtree(root / "runs")
    again = run("push", "all", "--wait")
    assert "pushed me/" not in again.stdout and "complete on this content (version 1), skipped" in again.stdout
    shutil.rmtree(root / ".kaggle-ledger")
    fresh = run("push", "all", "--wait")
    assert "Kaggle has version 1 (this build); the ledger knows it now" in fresh.stdout
    assert "pushed me/" not in fresh.stdout
    resubmit = run("submit")
    assert "Kaggle has it as submission 40000001 already" in resubmit.stdout
    assert _versions(env) == {"me/imet-2019-train": 1, "me/imet-2019-submit": 1}
    assert len(_server(env)["submissions"]) == 1


def test_a_build_in_a_second_terminal_doesnt_change_what_the_driver_pushes(repo):
    """One driver, one snapshot: a build beside a running driver, and a second driver refused."""
    root, env, run = repo
    fake_kaggle.configure(env, **FIELD)
    folds = ("--split-folds", "--set", "folds=[0,1]")
    proc = _popen(root, env, "push", "all", "--wait", *folds)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "pushed me/imet-2019-train-f0" in line:
            break
    run("build", *folds, "--set", "epochs=3")  # the second terminal, while f0 runs
    second = run("wait", ok=False)  # a second driver is refused
    assert "is driving these kernels already" in second.stderr and "pid" in second.stderr
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, "".join(seen) + out
    sources = Path(env[fake_kaggle.STATE_ENV]) / "sources" / "me"
    pushed = {
        k: fake_kaggle._pushed_config((sources / k / "v1").read_text())
        for k in ("imet-2019-train-f0", "imet-2019-train-f1")
    }
    assert [c["epochs"] for c in pushed.values()] == [8, 8]  # what the driver built when it started
    rebuilt = fake_kaggle._pushed_config((root / "build" / "imet-2019-train-f1" / "imet-2019-train-f1.py").read_text())
    assert rebuilt["epochs"] == 3  # the second terminal's build happened, beside the driver
    assert _versions(env) == {"me/imet-2019-train-f0": 1, "me/imet-2019-train-f1": 1, "me/imet-2019-submit": 1}


def test_new_script_cancel_requested_a_failure_message_and_a_json_429_through_the_cli(repo):
    root, env, run = repo
    train = "imet-2019-train"
    stopped = {train: "Stopped by its owner"}
    fake_kaggle.configure(env, never_run=[train], rate_limit_every=4, cancels={train: 2}, failure_messages=stopped)
    run("build")
    before = run("status")
    assert f"me/{train}" in before.stdout and "NEW_SCRIPT on Kaggle, not pushed from here" in before.stdout
    cancelled = run("push", "--wait", ok=False)  # NEW_SCRIPT holds nothing: pushed
    assert f"pushed me/{train} version 1" in cancelled.stdout and f"me/{train}  CANCEL_REQUESTED" in cancelled.stdout
    assert "ended CANCEL_ACKNOWLEDGED: Stopped by its owner" in cancelled.stderr
    assert "Too many requests from this account: slow down; retry 1 in" in cancelled.stdout  # the JSON 429
    assert _server(env)["rate_limited"] > 0 and _server(env)["max_gpu_active"] == 1
    out = cancelled.stdout  # CANCEL_REQUESTED is not an end: waited through, until acknowledged
    assert out.index(f"me/{train}  CANCEL_REQUESTED") < out.index(f"me/{train}  CANCEL_ACKNOWLEDGED")
