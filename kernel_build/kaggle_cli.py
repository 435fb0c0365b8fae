"""The one door to the kaggle CLI: credentials, every call under a timeout, each answer classified, transient
ones retried.

Every Kaggle step runs ``kaggle`` as a subprocess and reads what it prints (its texts: ``../shared/KAGGLE.md``
in the project's workspace, summarised in docs/kaggle.md). What the 2.2.5 CLI and the field show:

- ``Permission 'kernels.get' was denied`` (stderr, exit 1) is what a kernel never pushed answers, what a new
  kernel answers for a short while after its first push, and what every call answers once a ``kaggle auth
  login`` has expired. Only the caller knows which: the answer is classified ``denied`` and left to it.
- ``Notebook not found`` / ``To search for one, try 'kaggle search <query>'`` (a 404, exit 1) is what a kernel
  never pushed answered until recently, and what a version that doesn't exist answers: ``missing``. The caller
  reads it like ``denied``: nothing about a kernel is concluded from either alone.
- ``Authentication required`` (stdout, exit 1) or a 401: the credentials are gone. ``CredentialsGone``.
- 5xx, 429 (also a JSON 429, which 2.2.5 prints as the server's message plus "You have been rate limited"), a
  timeout, a connection error: retried with exponential backoff and jitter, a bounded number of times, then
  ``KaggleUnavailable``. Calls that change something (push, submit) are never retried blindly: their caller
  records the intent first and asks Kaggle what happened before doing them again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from kernel_build.kernel import Build, BuildError

CREDENTIALS_HINT = (
    "no Kaggle credentials: for unattended runs create an API token (kaggle.com/settings/api) and set "
    "KAGGLE_API_TOKEN or save it to ~/.kaggle/access_token; or put kaggle.json in ~/.kaggle/ (or "
    "KAGGLE_CONFIG_DIR), or set KAGGLE_USERNAME and KAGGLE_KEY; or run `kaggle auth login` (OAuth, expires)"
)
DENIED = re.compile(r"Permission 'kernels\.get' was denied|403 Client Error|You don't have access", re.I)
MISSING = re.compile(r"not found|404 Client Error|To search for one, try", re.I)
AUTH = re.compile(r"Authentication required|401 Client Error|Unauthorized|could not find kaggle\.json", re.I)
TRANSIENT = re.compile(
    r"\b5\d\d Server Error|\b429\b|Too Many Requests|rate limited|problem on Kaggle's side|currently unavailable|"
    r"Connection ?(Error|aborted|reset|refused)|timed out|Max retries exceeded|RemoteDisconnected|"
    r"Temporary failure in name resolution",
    re.I,
)
CALL_TIMEOUT = 180.0  # seconds for one call: a stalled connection after a laptop sleep must not hang for good


class CredentialsGone(BuildError):
    """The CLI's login is missing or expired: nothing more can be asked of Kaggle until the user logs in."""


class KaggleUnavailable(BuildError):
    """Kaggle kept answering 5xx, 429 or nothing at all, past the retries."""


@dataclasses.dataclass(frozen=True)
class Answer:
    """What one CLI call printed, and what kind of answer it was."""

    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return (self.out + "\n" + self.err).strip()

    @property
    def kind(self) -> str:
        """``ok``, ``auth``, ``transient``, ``denied`` (403), ``missing`` (404) or ``error``."""
        if self.rc == 0:
            return "ok"
        if AUTH.search(self.text):
            return "auth"
        if TRANSIENT.search(self.text):
            return "transient"
        if DENIED.search(self.text):
            return "denied"
        if MISSING.search(self.text):
            return "missing"
        return "error"

    @property
    def unanswered(self) -> bool:
        """Kaggle said nothing about the thing asked: denied (403) or not found (404)."""
        return self.kind in ("denied", "missing")

    def why(self) -> str:
        """The answer's most telling line, for a message."""
        lines = [line.strip() for line in self.text.splitlines() if line.strip()]
        for pattern in (AUTH, TRANSIENT, DENIED, MISSING):
            hit = next((line for line in lines if pattern.search(line)), None)
            if hit:
                return hit
        return lines[-1] if lines else f"exit {self.rc}, no output"


def _config_dirs() -> list[Path]:
    """Where the kaggle CLI looks for kaggle.json."""
    dirs = [os.environ.get("KAGGLE_CONFIG_DIR"), str(Path.home() / ".kaggle"), str(Path.home() / ".config" / "kaggle")]
    return [Path(d) for d in dirs if d]


def has_credentials() -> bool:
    """Whether any credential the 2.2.5 CLI accepts is here: KAGGLE_API_TOKEN, an access_token file,
    KAGGLE_USERNAME with KAGGLE_KEY, kaggle.json, or the credentials.json that ``kaggle auth login`` writes."""
    if os.environ.get("KAGGLE_API_TOKEN") or (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")):
        return True
    names = ("kaggle.json", "access_token", "access_token.txt", "credentials.json")
    return any((d / name).is_file() for d in _config_dirs() for name in names)


def _known_secrets() -> list[str]:
    secrets = [os.environ.get("KAGGLE_KEY"), os.environ.get("KAGGLE_API_TOKEN")]
    for d in _config_dirs():
        try:
            secrets.append(json.loads((d / "kaggle.json").read_text()).get("key"))
        except (OSError, ValueError, AttributeError):
            continue
    return [str(s) for s in secrets if s and len(str(s)) >= 8]


def check_no_secrets(text: str, where: str) -> None:
    """Refuses ``text`` if it holds the user's Kaggle API key, or anything shaped like kaggle.json content."""
    for secret in _known_secrets():
        if secret in text:
            raise BuildError(f"{where} would carry your Kaggle API key; remove it from the sources and config")
    m = re.search(r"""["']key["']\s*:\s*["'][0-9a-f]{32}["']""", text)
    if m:
        raise BuildError(f"{where} holds what looks like kaggle.json content ({m.group(0)[:12]}...); remove it")


def credentials_gone_message(what: str) -> str:
    return (
        f"{what}: the Kaggle credentials are gone or expired (a `kaggle auth login` OAuth login expires). "
        "Log in again: for unattended runs create an API token at kaggle.com/settings/api and set "
        "KAGGLE_API_TOKEN (or save it to ~/.kaggle/access_token); or `kaggle auth login`. The kernels on Kaggle "
        "keep running; the same command resumes (the ledger, or Kaggle itself)."
    )


class KaggleCli:
    """Runs ``kaggle`` with a timeout, classifies its answers and retries the transient ones.

    Args:
        timeout: seconds for one call.
        tries: attempts of a retried call.
        backoff: the first retry's delay in seconds; it doubles each time, up to ``max_backoff``, with jitter.
        sleep: the waiting function (tests make time pass without waiting).
    """

    def __init__(
        self,
        *,
        timeout: float = CALL_TIMEOUT,
        tries: int = 6,
        backoff: float = 2.0,
        max_backoff: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not has_credentials():
            raise BuildError(CREDENTIALS_HINT)
        exe = shutil.which("kaggle")
        if exe is None:
            raise BuildError("the kaggle CLI is not on PATH: pip install kaggle")
        self.exe, self.timeout, self.tries = exe, timeout, tries
        self.backoff, self.max_backoff, self.sleep = backoff, max_backoff, sleep

    def once(self, *args: str, timeout: float | None = None) -> Answer:
        """One call, no retry. Its child has its own session, so a Ctrl-C here never kills it halfway."""
        limit = timeout or self.timeout
        try:
            proc = subprocess.run(
                [self.exe, *args],
                capture_output=True,
                text=True,
                timeout=limit,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            return Answer(124, out, f"kaggle {' '.join(args[:2])} timed out after {limit:.0f} s")
        return Answer(proc.returncode, proc.stdout, proc.stderr)

    def call(self, *args: str, timeout: float | None = None) -> Answer:
        """A read: retried while the answer is transient. Raises CredentialsGone, or KaggleUnavailable."""
        for attempt in range(self.tries):
            answer = self.once(*args, timeout=timeout)
            if answer.kind == "auth":
                raise CredentialsGone(credentials_gone_message(f"kaggle {' '.join(args[:2])}"))
            if answer.kind != "transient":
                return answer
            if attempt + 1 == self.tries:
                break
            delay = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random())
            print(f"  kaggle {' '.join(args[:2])}: {answer.why()}; retry {attempt + 1} in {delay:.1f} s", flush=True)
            self.sleep(delay)
        raise KaggleUnavailable(
            f"kaggle {' '.join(args[:2])} failed {self.tries} times: {answer.why()}. Kaggle is unavailable or "
            "rate-limiting; the kernels keep running and the same command resumes later"
        )


def status(build: Build) -> None:
    """Prints ``kaggle kernels status`` of each kernel, as the CLI says it (``status`` prints the ledger too)."""
    cli = KaggleCli()
    for kernel in build:
        answer = cli.call("kernels", "status", kernel.id)
        print(answer.out.strip() if answer.kind == "ok" else f"{kernel.id}: {answer.why()}")
