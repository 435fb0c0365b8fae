"""From repo to leaderboard against the real kaggle CLI with a fake server (tests/fake_kaggle.py): probe, plan,
push in waves, wait, submit, pull and report; and each way a step can fail. No TensorFlow here."""

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fake_kaggle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _max_running(env):
    """The most GPU runs the fake server had queued or running at once (from its push order and polls)."""
    return json.loads((Path(env[fake_kaggle.STATE_ENV]) / "state.json").read_text()).get("max_gpu_active", 0)


pytestmark = pytest.mark.slow  # drives the fake Kaggle CLI through whole runs


def test_from_zero_to_a_leaderboard_score(repo):
    root, env, run = repo
    probe = run("probe")
    assert "probe: imet-2019-fgvc6 accepts a late kernel submission" in probe.stdout
    plan = run("plan", "--split-folds")
    assert "me/imet-2019-train-f4" in plan.stdout and "estimate (unmeasured)" in plan.stdout
    assert "total:" in plan.stdout and "GPU hours" in plan.stdout
    push = run("push", "all", "--wait", "--split-folds")
    assert push.stdout.index("plan:") < push.stdout.index("pushed me/imet-2019-train-f0")
    assert "Maximum batch GPU session count" not in push.stdout  # waves kept it at one, as Kaggle allows
    assert _max_running(env) == 1
    order = [line.split()[1] for line in push.stdout.splitlines() if line.startswith("pushed ")]
    assert order == [f"me/imet-2019-train-f{k}" for k in range(5)] + ["me/imet-2019-submit"]
    sub = run("submit")
    assert "Successfully submitted to iMet Collection 2019 - FGVC6" in sub.stdout
    assert "public 0.61234, private 0.60871" in sub.stdout
    submit_call = [c for c in fake_kaggle.calls(env) if c.startswith("competitions submit")][-1]
    assert re.fullmatch(
        r"competitions submit imet-2019-fgvc6 -k me/imet-2019-submit -v 1 -f submission.csv -m "
        r"efficientnet-b3 288px folds 5/5 epochs 8 rule per_group \[imet-2019-submit v1\]",
        submit_call,
    ), submit_call
    pull = run("pull")
    assert "(models left out)" in pull.stdout
    for slug in [f"imet-2019-train-f{k}" for k in range(5)]:
        folder = root / "runs" / slug / "v1"
        assert (folder / "config.json").is_file() and (folder / "folds.csv").is_file()
        assert list(folder.glob("fold*/oof.npz")) and list(folder.glob("fold*/history.csv"))
        assert (folder / "training_curves.png").is_file() and not list(folder.rglob("model"))
    assert (root / "runs/imet-2019-submit/v1/decision.json").is_file()
    again = run("pull")
    assert "already pulled" in again.stdout
    assert not list((root / "runs").rglob("*.partial*"))
    rep = run("report")
    row = next(line for line in rep.stdout.splitlines() if line.startswith("imet-2019-submit"))
    assert "0.61234 / 0.60871" in row and "per_group" in row and "0.6031 (pooled)" in row
    fold_row = next(line for line in rep.stdout.splitlines() if line.startswith("imet-2019-train-f3"))
    assert "efficientnet-b3" in fold_row and "288" in fold_row and "1/1" in fold_row and fold_row.endswith("1.20")
    assert row.endswith("0.50")  # the submit kernel's half hour, from its log
    md = (root / "runs" / "report.md").read_text()
    assert md.count("training_curves.png") == 5 and "0.61234" in md


def test_a_second_push_waits_for_the_new_train_versions_not_the_old_complete(repo):
    root, env, run = repo
    run("push", "all", "--wait")
    # A server that ignores the version asked for (the fallback): status reports the previous run's COMPLETE
    # twice after a push.
    fake_kaggle.configure(env, stale_polls=2, version_status=False)
    second = run("push", "all", "--wait", "--set", "epochs=3")  # changed code: new versions
    assert "COMPLETE (previous run)" in second.stdout
    calls = fake_kaggle.calls(env)
    pushes = [i for i, c in enumerate(calls) if c.startswith("kernels push")]
    submit_push = pushes[-1]
    train_statuses = [calls[i] for i in range(pushes[-2], submit_push) if "status me/imet-2019-train" in calls[i]]
    assert len(train_statuses) >= 2 + 1 + 2  # stale twice, queued, running twice before its new complete
    lines = second.stdout.splitlines()
    new_complete = next(i for i, line in enumerate(lines) if line.endswith("me/imet-2019-train  COMPLETE"))
    assert new_complete < next(i for i, line in enumerate(lines) if line.startswith("pushed me/imet-2019-submit"))


def test_a_push_while_the_train_kernel_runs_never_makes_a_second_version(repo):
    root, env, run = repo
    run("push")
    again = run("push")
    assert "me/imet-2019-train: version 1 was pushed before; waiting" in again.stdout
    assert len([c for c in fake_kaggle.calls(env) if c.startswith("kernels push")]) == 1
    fake_kaggle.configure(env, stale_polls=0)
    run("wait")
    same = run("push", "--wait")
    assert "complete on this content (version 1), skipped" in same.stdout
    changed = run("push", "--wait", "--set", "epochs=3")  # changed code: a new version, after the old one ended
    assert "pushed me/imet-2019-train version 2" in changed.stdout


def test_push_submit_is_refused_until_its_train_kernels_complete(repo):
    root, env, run = repo
    run("push")
    res = run("push", "submit", ok=False)
    assert (
        "refusing to push the submit kernel: these train kernels are not complete on what is built now: "
        "me/imet-2019-train" in res.stderr
    )
    run("wait")
    ok = run("push", "submit")
    assert "pushed me/imet-2019-submit version 1" in ok.stdout


def test_the_placeholder_owner_is_refused_before_any_push(repo):
    root, env, run = repo
    meta = root / "kernel-metadata.json"
    meta.write_text(meta.read_text().replace('"me/', '"your-kaggle-username/'))
    res = run("push", ok=False)
    assert "still has the placeholder owner 'your-kaggle-username'" in res.stderr
    check = run("check", ok=False)
    assert "placeholder owner" in check.stdout
    assert run().returncode == 0  # a plain build still works
    assert fake_kaggle.calls(env) == []


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"push_errors": {"imet-2019-train": "Notebook not found"}}, "Kernel push error: Notebook not found"),
        (
            {"competitions": []},
            "The following are not valid competition sources and could not be added to the kernel: ['imet-2019-fgvc6']",
        ),
    ],
)
def test_an_exit_0_rejection_is_a_failure(repo, setting, message):
    root, env, run = repo
    fake_kaggle.configure(env, **setting)
    res = run("push", ok=False)
    assert "failed (exit 0)" in res.stderr and message in res.stderr
    assert ("version 1 was pushed anyway" in res.stderr) == ("not valid" in message)


def test_the_gpu_session_limit_is_retried_not_failed(repo):
    root, env, run = repo
    fake_kaggle.configure(env, busy_gpu_pushes=2)  # someone else's session holds the GPU for two tries
    res = run("push", "--wait", "--split-folds")
    assert "Maximum batch GPU session count of 1 reached. Retrying with backoff" in res.stdout
    assert "the GPU session is taken; trying again in" in res.stdout
    assert res.stdout.count("pushed me/imet-2019-train-f") == 5 and _max_running(env) == 1


def test_split_folds_without_wait_says_to_wait(repo):
    root, env, run = repo
    res = run("push", "--split-folds", ok=False)
    assert "5 GPU kernels to push but at most 1 run at a time: add --wait to push them in waves" in res.stderr


def test_a_failed_kernel_prints_its_traceback(repo):
    root, env, run = repo
    fake_kaggle.configure(env, errors={"imet-2019-train": '  File "x.py", line 3, in main\nValueError: bad fold 7'})
    res = run("push", "--wait", ok=False)
    assert "me/imet-2019-train ended ERROR; the end of its log:" in res.stdout
    assert "    Traceback (most recent call last):" in res.stdout and "ValueError: bad fold 7" in res.stdout
    assert "failed: ended ERROR: ValueError: bad fold 7" in res.stderr


def test_a_refused_late_submission_says_so_with_the_clis_message(repo):
    root, env, run = repo
    fake_kaggle.configure(env, late_refused={"imet-2019-fgvc6": "Late submission is unavailable"})
    res = run("probe", ok=False)
    assert "probe: imet-2019-fgvc6 does NOT accept a late kernel submission. The CLI said:" in res.stdout
    assert "Late submission is unavailable" in res.stdout


@pytest.mark.parametrize("competition", ["imet-2020-fgvc7", "imet-2021-fgvc8"])
def test_the_probe_works_for_later_imet_competitions(repo, competition):
    root, env, run = repo
    res = run("probe", "--set", f"competition={competition}")
    assert f"probe: {competition} accepts a late kernel submission" in res.stdout
    push = next(c for c in fake_kaggle.calls(env) if c.startswith("kernels push"))
    meta = json.loads((Path(push.split()[-1]) / "kernel-metadata.json").read_text())
    assert meta["competition_sources"] == [competition] and meta["enable_gpu"] is False
    shutil.rmtree(root / "build")


def test_the_configured_competition_is_the_one_submitted_to(repo):
    root, env, run = repo
    run("push", "all", "--wait", "--set", "competition=imet-2020-fgvc7")
    res = run("submit")
    assert "Successfully submitted to iMet Collection 2020 - FGVC7" in res.stdout
    submit = [c for c in fake_kaggle.calls(env) if c.startswith("competitions submit")]
    assert len(submit) == 1 and submit[0].startswith("competitions submit imet-2020-fgvc7 -k me/imet-2019-submit -v 1")
    meta = json.loads((root / "build" / "imet-2019-submit" / "kernel-metadata.json").read_text())
    assert meta["competition_sources"] == ["imet-2020-fgvc7"]


def test_no_credentials_give_a_one_line_hint_and_no_call(repo):
    root, env, run = repo
    for key in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        env.pop(key, None)
    env["HOME"] = str(root / "home")
    res = run("push", ok=False)
    assert "KAGGLE_USERNAME and KAGGLE_KEY" in res.stderr and "kaggle auth login" in res.stderr
    assert [line for line in res.stderr.splitlines() if not line.startswith("note:")][1:] == []
    assert "Traceback" not in res.stderr and fake_kaggle.calls(env) == []


def test_ctrl_c_stops_waiting_not_the_kernels(repo, monkeypatch):
    from kernel_build import built_kernels
    from kernel_build.orchestrate import Interrupted, Orchestrator

    root, env, run = repo
    run("push")
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def ctrl_c(seconds):
        raise KeyboardInterrupt

    build = built_kernels(root / "build")
    orch = Orchestrator(build, competition="imet-2019-fgvc6", runs_dir=root / "runs", sleep=ctrl_c)
    with pytest.raises(Interrupted, match=r"stopped waiting; the kernels run on. The same command resumes"):
        orch.wait(list(build.train))
    assert not [c for c in fake_kaggle.calls(env) if "cancel" in c or "delete" in c]


def test_the_plan_warns_over_a_session_and_over_the_weekly_quota(repo):
    root, env, run = repo
    res = run("plan", "--set", "epochs=20", "--set", "model=efficientnet-b5")
    assert "warning: me/imet-2019-train would run" in res.stdout and "over its 12 h session" in res.stdout
    assert "more than the weekly quota of about 30" in res.stdout
    assert "measured on" not in res.stdout
    assert fake_kaggle.calls(env) == ["quota -v"]  # the plan against the GPU hours left, and nothing else
    assert "GPU quota: 27.5 h left of 30 h" in res.stdout and "warning: the plan needs" in res.stdout
    assert "(forced)" not in res.stdout and "--force" not in res.stdout
