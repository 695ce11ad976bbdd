"""Helpers for driving the ``horizon`` command end to end, always with a deadline."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def horizon_env() -> dict[str, str]:
    """The environment children run in: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_horizon(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m horizon_drivers ARGS`` to completion (killed after ``timeout``)."""
    return subprocess.run(
        [sys.executable, "-m", "horizon_drivers", *args],
        capture_output=True, text=True, timeout=timeout, env=horizon_env(), cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


class Server:
    """A running ``horizon echo``: its banner line, and a bounded way to stop it."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.banner = self.read_line(30.0)

    def read_line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"no output from horizon echo within {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            assert self.proc.stderr is not None
            raise AssertionError(f"horizon echo exited {self.proc.returncode}: "
                                 f"{self.proc.stderr.read()}")
        return line.strip()

    def stop(
        self, signum: int = signal.SIGTERM, *, group: bool = False, timeout: float = 20.0
    ) -> tuple[int, str, str]:
        """Signal the command (or its whole process group, as Ctrl-C at a terminal does)."""
        if group:
            os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


@contextmanager
def echo_server(*args: str) -> Iterator[Server]:
    """Run ``horizon echo ARGS``; whatever the block leaves running is killed on the way out."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "horizon_drivers", "echo", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True, env=horizon_env(), cwd=ROOT, start_new_session=True,
    )
    try:
        yield Server(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
