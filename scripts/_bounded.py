"""Running a command with a time bound, for the scripts behind the Makefile.

The command gets a process group of its own, so that stopping it (on a timeout or a
Ctrl-C) stops everything it started and nothing else. Standard library only.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from pathlib import Path


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group of ``proc``: SIGTERM, then SIGKILL, 10 s each."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def run(cmd: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> int:
    """Run ``cmd`` (its output passes through); return its exit code, 124 on a timeout."""
    print("+ " + shlex.join(cmd), flush=True)
    proc = subprocess.Popen(cmd, cwd=str(cwd), env=env, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"timed out after {timeout:.0f} s: stopping it", flush=True)
        stop(proc)
        return 124
    except BaseException:
        stop(proc)
        raise
