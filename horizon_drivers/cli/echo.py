"""``horizon echo``: serve UDP and TCP echo with a chosen driver and config.

Loopback by default (``127.0.0.1:9000`` for both protocols when neither ``--udp`` nor ``--tcp`` is
given); all interfaces only when ``0.0.0.0`` or ``[::]`` is written out. ``--workers N`` runs N
processes that share each port through SO_REUSEPORT, each pinned to its own CPU. SIGINT or
SIGTERM stops every worker and prints one summary line built from the sockets' stats.

The first stdout line names the bound addresses (with the real port for port 0)::

    horizon echo: serving udp 127.0.0.1:9000, tcp 127.0.0.1:9000 with the native driver ...

Example:
    >>> build = argparse.ArgumentParser().add_subparsers()
    >>> add_parser(build).parse_args(["--workers", "2"]).workers
    2
"""

from __future__ import annotations

import argparse
import errno
import multiprocessing
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import attrs

from horizon_core.addresses import SocketAddress
from horizon_core.config import NetConfig
from horizon_drivers import registry
from horizon_drivers.cli.echo_service import (
    IN_MEMORY_DRIVERS,
    STOP_CHECK_INTERVAL,
    Bound,
    EchoTotals,
    StopFlag,
    serve_echo,
    stop_on_signals,
)
from horizon_drivers.cli.endpoints import LOOPBACK, load_config, parse_endpoint
from horizon_drivers.cli.failures import CommandError, explain
from horizon_drivers.tuning import current_affinity, pin_to_cpu

__all__ = ["DEFAULT_PORT", "add_parser", "default_driver", "run", "served_drivers"]

#: The port both protocols use when neither ``--udp`` nor ``--tcp`` is given.
DEFAULT_PORT = 9000

# Bounds on every wait for a worker, so a stuck one is killed instead of hanging the command.
_READY_TIMEOUT = 20.0
_EXIT_TIMEOUT = 5.0


def served_drivers() -> tuple[str, ...]:
    """Drivers available here that serve real sockets (every available one but ``sim``).

    Example:
        >>> "portable" in served_drivers()
        True
    """
    return tuple(n for n in registry.available_drivers() if n not in IN_MEMORY_DRIVERS)


def default_driver() -> str:
    """``native`` where it runs, else ``portable``.

    Example:
        >>> default_driver() in ("native", "portable")
        True
    """
    return "native" if "native" in served_drivers() else "portable"


def check_driver(name: str) -> str:
    """``name`` if it can serve echo here; otherwise CommandError saying why and what can.

    Example:
        >>> check_driver("portable")
        'portable'
    """
    usable = ", ".join(served_drivers())
    try:
        status = registry.driver_status(name)
    except ValueError as exc:
        raise CommandError(f"{exc} (available here: {usable})") from None
    if not status.available:
        raise CommandError(
            f"driver {name!r} is unavailable on this host: {status.reason} (available: {usable})"
        )
    if name in IN_MEMORY_DRIVERS:
        raise CommandError(
            f"driver {name!r} cannot serve echo: {IN_MEMORY_DRIVERS[name]} (available: {usable})"
        )
    return name


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``echo`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "echo",
        help="serve UDP and TCP echo with a Horizon driver",
        description="Serve UDP and TCP echo with a Horizon driver and config: loopback port "
        f"{DEFAULT_PORT} for both unless --udp/--tcp say otherwise; Ctrl-C or SIGTERM stops it "
        "with a one-line summary.",
    )
    parser.add_argument(
        "--driver", help="driver to serve with (default: native where available, else portable)"
    )
    parser.add_argument("--udp", metavar="HOST:PORT", help="serve UDP echo here")
    parser.add_argument("--tcp", metavar="HOST:PORT", help="serve TCP echo here")
    parser.add_argument("--config", metavar="FILE.toml", help="NetConfig fields in a TOML file")
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="processes sharing the ports via SO_REUSEPORT, each pinned to its own CPU",
    )
    parser.add_argument(
        "--share-port", action="store_true",
        help="serve even if another process already serves a port with SO_REUSEPORT (the kernel "
        "then splits that port's traffic between them); refused by default",
    )
    parser.set_defaults(command=run)
    return parser


@attrs.frozen
class _Plan:
    driver: str
    udp: SocketAddress | None
    tcp: SocketAddress | None
    config: NetConfig
    workers: int


def _plan(args: argparse.Namespace) -> _Plan:
    driver = check_driver(args.driver or default_driver())
    if args.udp is None and args.tcp is None:
        udp: SocketAddress | None = parse_endpoint(f"{LOOPBACK}:{DEFAULT_PORT}", "--udp")
        tcp: SocketAddress | None = parse_endpoint(f"{LOOPBACK}:{DEFAULT_PORT}", "--tcp")
    else:
        udp = parse_endpoint(args.udp, "--udp") if args.udp is not None else None
        tcp = parse_endpoint(args.tcp, "--tcp") if args.tcp is not None else None
    config = load_config(args.config)
    workers: int = args.workers
    if workers < 1:
        raise CommandError(f"--workers must be at least 1, got {workers}")
    if workers > 1:
        cpus = len(current_affinity())
        if workers > cpus:
            raise CommandError(
                f"--workers {workers} needs {workers} CPUs (one each); this process may use {cpus}"
            )
        if not config.reuse_port:
            raise CommandError("--workers needs reuse_port = true: workers share the ports")
    if config.reuse_port and not args.share_port:
        for kind, address in (("udp", udp), ("tcp", tcp)):
            if address is not None:
                check_port_unserved(kind, address)
    return _Plan(driver, udp, tcp, config, workers)


def check_port_unserved(kind: str, address: SocketAddress) -> None:
    """Refuse a port another process serves: with SO_REUSEPORT on, binding it would succeed and
    silently take part of that server's traffic.

    A probe socket that binds without SO_REUSEPORT is refused while one with it is not: a server
    holds the port with SO_REUSEPORT. (For UDP the probes go without SO_REUSEADDR, which would
    share a UDP port too; for TCP with it, so a recently closed server's TIME_WAIT connections do
    not count as a server.) Port 0 and platforms without SO_REUSEPORT cannot collide this way.

    Example:
        >>> check_port_unserved("udp", SocketAddress.parse("127.0.0.1:0"))
    """
    if address.port == 0 or not hasattr(socket, "SO_REUSEPORT"):
        return
    if _binds(kind, address, reuse_port=False) or not _binds(kind, address, reuse_port=True):
        return  # free, or taken outright: binding the real socket reports "port in use"
    raise CommandError(
        f"--{kind} {address}: another process already serves this port; serving it too "
        "would split its traffic (SO_REUSEPORT). Pick another port, or pass --share-port "
        "to share it on purpose"
    )


def _binds(kind: str, address: SocketAddress, *, reuse_port: bool) -> bool:
    """Whether a probe socket can bind ``address`` now (False only for EADDRINUSE)."""
    family = socket.AF_INET if address.family == 4 else socket.AF_INET6
    sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    with socket.socket(family, sock_type) as probe:
        if kind == "tcp":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind(address.to_sockaddr())
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
        return True


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; print the bound addresses, then one summary line."""
    plan = _plan(args)
    if plan.workers == 1:
        return _run_single(plan)
    return _run_workers(plan)


def _banner(plan: _Plan, bound: Bound, cpus: str = "") -> str:
    workers = "1 worker" if plan.workers == 1 else f"{plan.workers} workers{cpus}"
    return (
        f"horizon echo: serving {bound.describe()} with the {plan.driver} driver ({workers}); "
        "Ctrl-C to stop"
    )


def _run_single(plan: _Plan) -> int:
    stop = StopFlag()
    bound: list[Bound] = []

    def ready(where: Bound) -> None:
        bound.append(where)
        print(_banner(plan, where), flush=True)

    with stop_on_signals(stop):
        totals = _bind_errors(lambda: serve_echo(plan.driver, plan.udp, plan.tcp, plan.config,
                                                 stop, ready))
    print(f"horizon echo: {totals.summary(bound[0])}", flush=True)
    return 0


def _bind_errors(serve: Callable[[], EchoTotals]) -> EchoTotals:
    try:
        result = serve()
    except OSError as exc:
        line = explain(exc)
        if line is None:
            raise
        raise CommandError(f"cannot serve echo: {line}") from None
    return result


# -- workers ------------------------------------------------------------------------------------


def _worker(
    cpu: int, driver: str, udp: SocketAddress | None, tcp: SocketAddress | None,
    config: NetConfig, conn: Connection,
) -> None:
    """One worker process: pin, serve, report ready / done / error through ``conn``."""
    stop = StopFlag()
    try:
        with stop_on_signals(stop):
            pin_to_cpu(cpu)
            totals = serve_echo(driver, udp, tcp, config, stop, lambda b: conn.send(("ready", b)))
        conn.send(("done", totals.to_dict()))
    except BaseException as exc:  # report, never a traceback: the parent prints one line
        conn.send(("error", explain(exc) or f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


@attrs.define
class _Worker:
    process: BaseProcess
    conn: Connection
    cpu: int
    totals: EchoTotals | None = None

    def receive(self, timeout: float) -> tuple[str, Any]:
        if not self.conn.poll(timeout):
            if not self.process.is_alive():
                return ("error", f"worker on CPU {self.cpu} exited ({self.process.exitcode})")
            return ("error", f"worker on CPU {self.cpu} did not answer within {timeout:.0f}s")
        try:
            message: tuple[str, Any] = self.conn.recv()
        except EOFError:
            return ("error", f"worker on CPU {self.cpu} exited ({self.process.exitcode})")
        return message


def _run_workers(plan: _Plan) -> int:
    # spawn, not fork: a fresh interpreter per worker, nothing inherited from this one.
    context = multiprocessing.get_context("spawn")
    cpus = current_affinity()[: plan.workers]
    workers: list[_Worker] = []
    stop = StopFlag()

    def start(cpu: int, udp: SocketAddress | None, tcp: SocketAddress | None) -> Bound:
        parent, child = context.Pipe()
        process = context.Process(
            target=_worker, args=(cpu, plan.driver, udp, tcp, plan.config, child),
            name=f"horizon-echo-cpu{cpu}", daemon=True,
        )
        process.start()
        child.close()
        worker = _Worker(process, parent, cpu)
        workers.append(worker)
        kind, payload = worker.receive(_READY_TIMEOUT)
        if kind != "ready":
            raise CommandError(f"cannot serve echo: {payload}")
        assert isinstance(payload, Bound)
        return payload

    try:
        with stop_on_signals(stop):
            # The first worker binds (port 0 becomes a real port); the rest join its ports.
            bound = start(cpus[0], plan.udp, plan.tcp)
            for cpu in cpus[1:]:
                start(cpu, bound.udp, bound.tcp)
            print(_banner(plan, bound, f" on CPUs {','.join(map(str, cpus))}"), flush=True)
            failure = _supervise(workers, stop)
            totals = _collect(workers)
    finally:
        _terminate(workers)
    if failure is not None:
        raise CommandError(failure)
    print(f"horizon echo: {totals.summary(bound)} ({plan.workers} workers)", flush=True)
    return 0


def _supervise(workers: list[_Worker], stop: StopFlag) -> str | None:
    """Wait for a stop signal or a worker's own report; return a failure line, if any.

    A worker reporting ``done`` by itself got the signal first (Ctrl-C reaches the whole
    process group): that is a stop, not a failure.
    """
    while not stop.is_set():
        ready = wait([w.conn for w in workers if w.totals is None], timeout=STOP_CHECK_INTERVAL)
        for worker in workers:
            if worker.conn in ready:
                kind, payload = worker.receive(0)
                if kind != "done":
                    return str(payload)
                worker.totals = EchoTotals.from_dict(payload)
                stop.set()
    return None


def _collect(workers: list[_Worker]) -> EchoTotals:
    """Stop every worker that has not reported yet and sum the totals (bounded wait)."""
    pending = [w for w in workers if w.totals is None]
    for worker in pending:
        if worker.process.is_alive():
            worker.process.terminate()
    deadline = time.monotonic() + _EXIT_TIMEOUT
    for worker in pending:
        kind, payload = worker.receive(max(0.0, deadline - time.monotonic()))
        if kind == "done":
            worker.totals = EchoTotals.from_dict(payload)
        else:
            print(f"horizon echo: {payload}", file=sys.stderr)
    totals = EchoTotals()
    for worker in workers:
        if worker.totals is not None:
            totals = totals + worker.totals
    return totals


def _terminate(workers: list[_Worker]) -> None:
    """Make sure no worker outlives the command: TERM, bounded wait, KILL."""
    for worker in workers:
        if worker.process.is_alive():
            worker.process.terminate()
    deadline = time.monotonic() + _EXIT_TIMEOUT
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(1.0)
        worker.conn.close()
