"""Running one bench measurement: a server process, a load process, both bounded in time.

Rules this module obeys:

* Every wait has a deadline: the server must say it is ready within :data:`READY_TIMEOUT`, the
  load process must finish within its duration plus :data:`LOAD_GRACE`; past that the process is
  killed and the measurement is reported as failed, never waited on.
* Children run in their own session, so a Ctrl-C at the terminal reaches only the parent, which
  then ends them itself (``finally``): no child outlives ``horizon bench``.
* The server's CPU time while the load runs is read from ``/proc/PID/stat`` before and after
  (Linux; None elsewhere): replies per server CPU-second is steadier than replies per second on
  a shared machine.
* A child's failure becomes a one-line reason (its ``{"error": ...}`` line, else the last line it
  wrote to stderr), and the bench carries on with the next measurement.

Example:
    >>> Measurement("udp", None, "timed out").ok
    False
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import IO, Any

import attrs

from horizon_drivers.bench.process_cpu import cpu_seconds

__all__ = ["LOAD_GRACE", "READY_TIMEOUT", "Measurement", "Placement", "measure"]

#: How long a server may take to import, bind and say so.
READY_TIMEOUT = 20.0
#: Slack on top of a load run's own duration before it is killed.
LOAD_GRACE = 20.0
_STOP_TIMEOUT = 5.0
_CHILD = [sys.executable, "-m", "horizon_drivers.bench.child"]


@attrs.frozen
class Placement:
    """Which CPU the server and the load generator are pinned to (None: not pinned).

    Example:
        >>> Placement(0, 1).describe()
        'server on CPU 0, load generator on CPU 1'
    """

    server_cpu: int | None
    load_cpu: int | None

    def describe(self) -> str:
        """For the table heading."""
        if self.server_cpu is None or self.load_cpu is None:
            return "not pinned (fewer than 2 usable CPUs)"
        return f"server on CPU {self.server_cpu}, load generator on CPU {self.load_cpu}"

    def args(self, role: str) -> list[str]:
        """The child's ``--cpu`` arguments for ``role`` (``server`` or ``load``)."""
        cpu = self.server_cpu if role == "server" else self.load_cpu
        return [] if cpu is None else ["--cpu", str(cpu)]


@attrs.frozen
class Measurement:
    """The load process's result dict, or why there is none; ``server`` holds a Horizon
    server's own counts when it reported them, ``server_cpu_seconds`` the CPU time the server
    used while the load ran (None where it cannot be read).

    Example:
        >>> Measurement("tcp", {"bytes_per_s": 1.0}, None).ok
        True
    """

    protocol: str
    result: dict[str, Any] | None
    error: str | None
    server: dict[str, Any] | None = None
    server_cpu_seconds: float | None = None

    @property
    def ok(self) -> bool:
        """Whether there is a result."""
        return self.result is not None


class _ChildFailed(Exception):
    pass


def _env() -> dict[str, str]:
    # The children import this package the way the parent did, installed or from a checkout.
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _last_line(stderr: IO[str]) -> str:
    stderr.seek(0)
    lines = [line.strip() for line in stderr.read().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _message(line: str, stderr: IO[str]) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError:
        raise _ChildFailed(f"exited without an answer: {_last_line(stderr)}") from None
    if not isinstance(message, dict):
        raise _ChildFailed(f"unexpected answer {line!r}")
    if "error" in message:
        raise _ChildFailed(str(message["error"]))
    return message


def _read_line(proc: subprocess.Popen[str], timeout: float, stderr: IO[str]) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise _ChildFailed(f"no answer within {timeout:.0f}s")
    line = proc.stdout.readline()
    if not line:
        proc.wait(_STOP_TIMEOUT)
        raise _ChildFailed(f"exited ({proc.returncode}): {_last_line(stderr)}")
    return line


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, bounded wait, SIGKILL; return what the server printed on its way out."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=_STOP_TIMEOUT)
    return out or ""


def _server_totals(output: str) -> dict[str, Any] | None:
    for line in output.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and isinstance(message.get("totals"), dict):
            totals: dict[str, Any] = message["totals"]
            return totals
    return None


def measure(
    contender: str,
    protocol: str,
    placement: Placement,
    *,
    duration: float,
    warmup: float,
    size: int,
    window: int,
    connections: int = 1,
    pipeline: int = 256,
    mode: str = "both",
    server_args: Sequence[str] = (),
) -> Measurement:
    """Start ``contender``'s ``protocol`` echo server, run the load against it, stop both.

    ``mode`` picks the load runs (``both``, ``throughput`` or ``rtt``); ``pipeline`` is the
    messages in flight of TCP's pipelined run; ``server_args`` are
    extra ``serve`` options (``--buffer``, ``--spin-budget``, ``--no-gso``, ``--backend``,
    ``--per-datagram``: see :mod:`horizon_drivers.bench.child`).
    """
    env = _env()
    with tempfile.TemporaryFile("w+") as server_err, tempfile.TemporaryFile("w+") as load_err:
        server = subprocess.Popen(
            [*_CHILD, *placement.args("server"), "serve", contender, protocol, *server_args],
            stdout=subprocess.PIPE, stderr=server_err, stdin=subprocess.DEVNULL,
            text=True, env=env, start_new_session=True,
        )
        load: subprocess.Popen[str] | None = None
        result: dict[str, Any] | None = None
        error: str | None = None
        cpu: float | None = None
        try:
            ready = _message(_read_line(server, READY_TIMEOUT, server_err), server_err)
            # UDP mode both: windowed then window 1. TCP: bulk (not in mode rtt), ping-pong,
            # then pipelined.
            udp_runs = 2 if mode == "both" else 1
            runs = udp_runs if protocol == "udp" else 2 if mode == "rtt" else 3
            budget = runs * (duration + warmup) + LOAD_GRACE
            cpu_before = cpu_seconds(server.pid)
            load = subprocess.Popen(
                [*_CHILD, *placement.args("load"), "load", protocol, str(ready["ready"]),
                 "--duration", str(duration), "--warmup", str(warmup), "--size", str(size),
                 "--window", str(window), "--connections", str(connections),
                 "--pipeline", str(pipeline), "--mode", mode, "--server-pid", str(server.pid)],
                stdout=subprocess.PIPE, stderr=load_err, stdin=subprocess.DEVNULL,
                text=True, env=env, start_new_session=True,
            )
            try:
                out, _ = load.communicate(timeout=budget)
            except subprocess.TimeoutExpired:
                raise _ChildFailed(f"load generator overran {budget:.0f}s and was killed") from None
            cpu_after = cpu_seconds(server.pid)
            if cpu_before is not None and cpu_after is not None:
                cpu = cpu_after - cpu_before
            line = out.strip().splitlines()[-1] if out.strip() else ""
            result = _message(line, load_err)["result"]
        except _ChildFailed as exc:
            error = str(exc)
        finally:
            if load is not None and load.poll() is None:
                load.kill()
                load.wait(_STOP_TIMEOUT)
            totals = _server_totals(_stop(server))
    return Measurement(protocol, result, error, totals, cpu)
