"""The user's Kaggle credentials (never built into a kernel) and ``kaggle kernels status`` (pushing, waiting and
submitting: orchestrate.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from kernel_build.kernel import Build, BuildError

CREDENTIALS_HINT = (
    "no Kaggle credentials: put kaggle.json in ~/.kaggle/ (or KAGGLE_CONFIG_DIR), or set "
    "KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN"
)


def _config_dirs() -> list[Path]:
    """Where the kaggle CLI looks for kaggle.json."""
    dirs = [os.environ.get("KAGGLE_CONFIG_DIR"), str(Path.home() / ".kaggle"), str(Path.home() / ".config" / "kaggle")]
    return [Path(d) for d in dirs if d]


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


def _has_credentials() -> bool:
    if os.environ.get("KAGGLE_API_TOKEN") or (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")):
        return True
    return any((d / f).is_file() for d in _config_dirs() for f in ("kaggle.json", "access_token"))


def _kaggle(args: list[str]) -> tuple[bool, str]:
    """Runs the kaggle CLI; success needs exit 0 and no "error" in its output (it exits 0 on a push error)."""
    exe = shutil.which("kaggle")
    if exe is None:
        raise BuildError("the kaggle CLI is not on PATH: pip install kaggle")
    proc = subprocess.run([exe, *args], capture_output=True, text=True)
    output = (proc.stdout + proc.stderr).strip()
    if re.search(r"could not find kaggle\.json|unauthorized|401", output, re.I):
        raise BuildError(CREDENTIALS_HINT)
    return proc.returncode == 0 and "error" not in output.lower(), output


def status(build: Build) -> None:
    """Prints ``kaggle kernels status`` of each kernel."""
    if not _has_credentials():
        raise BuildError(CREDENTIALS_HINT)
    for kernel in build:
        kid = kernel.metadata()["id"]
        ok, output = _kaggle(["kernels", "status", kid])
        print(output if ok else f"{kid}: {output}")
