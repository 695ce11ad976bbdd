"""``horizon soak``: echo for a while with every datagram and byte checked, then exact accounting.

The server is the chosen driver's echo service in a child process pinned to one CPU; the client
(this process, pinned to another; the native driver's batch calls where it runs, else portable)
sends sequence-numbered, checksummed payloads (:mod:`~horizon_drivers.bench.soak_verify`) with
``--window`` in flight, for ``--duration`` seconds or ``--count`` datagrams. At the end it stops
sending, waits ``--grace`` for stragglers, stops the server and accounts for every datagram::

    sent = echoed + corrupted + server kernel drops + client kernel drops + server unsent
           + unexplained

Kernel drops are the sockets' own receive-queue counters (SO_MEMINFO, exact whenever read), not
inferred. Exit status: 0 when every run has ``unexplained == 0`` and nothing corrupted; 1 when a
run found loss nothing explains, a corrupted byte, or (``--strict``) a duplicate or a reordered
datagram (UDP allows both, so by default they are only reported; loopback produces none);
2 when the soak could not run (bad arguments, driver unavailable, server failed to start);
130 when Ctrl-C/SIGTERM stopped it early with nothing wrong found (what ran is still accounted
for and printed). ``--driver sim`` is refused: the simulated network is in-memory and cannot
serve the client's process.

``--tcp`` also soaks TCP (after UDP, for the same duration or count of records):
``--connections`` streams of checksummed records, every echoed byte compared with the byte
sent; any difference or missing byte fails it. A progress line goes to stderr every second
(rewritten in place on a terminal); ``--json FILE`` writes every number, the settings, the
config and the machine.

Example:
    >>> build = argparse.ArgumentParser().add_subparsers()
    >>> add_parser(build).parse_args(["--count", "5"]).count
    5
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any, Final

import attrs

from horizon_core._version import __version__
from horizon_drivers import registry
from horizon_drivers.bench.soak_verify import (
    SizePlan,
    TcpAccount,
    TcpLedger,
    UdpAccount,
    UdpLedger,
)
from horizon_drivers.cli.echo import check_driver, default_driver, served_drivers
from horizon_drivers.cli.endpoints import load_config
from horizon_drivers.cli.failures import EXIT_FAILURE, CommandError, explain

__all__ = [
    "EXIT_SOAK_FAILED",
    "ProgressPrinter",
    "add_parser",
    "main",
    "run",
    "tcp_account",
    "udp_account",
]

#: Exit status of a soak that ran and found a problem (2 stays "could not run").
EXIT_SOAK_FAILED: Final = 1
#: Exit status after SIGINT/SIGTERM stopped a soak that had found nothing wrong so far.
EXIT_INTERRUPTED: Final = 130
_DEFAULT_DURATION = 10.0
_MAX_WINDOW = 65536
_MAX_CONNECTIONS = 64
_MAX_GRACE = 30.0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``soak`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "soak",
        help="echo with checksummed, sequence-numbered payloads and account for every datagram",
        description="Reliability soak: the driver's echo server in a pinned child, a checking "
        "client here; every datagram sent is accounted for as echoed, dropped by a kernel "
        "(counted by the sockets), unsent by the server, or unexplained. Exit 0: nothing "
        "unexplained and nothing corrupted; 1: the soak found a problem; 2: it could not run.",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--driver", help="driver to soak (default: native where available, "
                       "else portable)")
    which.add_argument("--all-drivers", action="store_true",
                       help="soak every driver that serves sockets here, one after another")
    parser.add_argument("--udp", action=argparse.BooleanOptionalAction, default=True,
                        help="soak UDP (default: on)")
    parser.add_argument("--tcp", action=argparse.BooleanOptionalAction, default=False,
                        help="soak TCP too, after UDP (default: off)")
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument("--duration", type=float, metavar="SECONDS",
                       help=f"send for this long, per driver and protocol (default "
                       f"{_DEFAULT_DURATION:g})")
    limit.add_argument("--count", type=int, metavar="N",
                       help="send N datagrams (and N TCP records) per driver instead")
    parser.add_argument("--size", default="64", metavar="BYTES|MIN..MAX",
                        help="payload size, or a range each payload's size is drawn from by "
                        "its sequence number (16..65507; default 64)")
    parser.add_argument("--window", type=int, default=64, metavar="N",
                        help="UDP datagrams in flight (default 64)")
    parser.add_argument("--connections", type=int, default=1, metavar="N",
                        help="TCP connections (default 1)")
    parser.add_argument("--grace", type=float, default=0.5, metavar="SECONDS",
                        help="how long to wait for stragglers after sending stops (default 0.5)")
    parser.add_argument("--config", metavar="FILE.toml",
                        help="the server's NetConfig, as for horizon echo --config")
    parser.add_argument("--strict", action="store_true",
                        help="fail on duplicated or reordered datagrams too")
    parser.add_argument("--json", metavar="FILE", help="write every number as JSON ('-': stdout)")
    parser.set_defaults(command=run)
    return parser


# -- accounting ---------------------------------------------------------------------------------


def udp_account(
    ledger: UdpLedger, client_stats: dict[str, Any], server: dict[str, Any] | None
) -> UdpAccount:
    """The :class:`~horizon_drivers.bench.soak_verify.UdpAccount` of a ledger, the client
    socket's stats and the server's totals (None: the server reported nothing).

    Example:
        >>> ledger = UdpLedger(); _ = ledger.payloads(SizePlan(16, 16), 4); ledger.sent_more(4)
        >>> account = udp_account(ledger, {"kernel_drops": 0, "datagrams_received": 0},
        ...                       {"kernel_drops": 4, "udp_unsent": 0, "udp_received": 0,
        ...                        "udp_sent": 0})
        >>> account.unexplained, account.never_echoed
        (0, 4)
    """
    server = server or {}
    return UdpAccount(
        sent=ledger.sent, echoed=ledger.echoed, corrupted=ledger.corrupted,
        duplicates=ledger.duplicates, reordered=ledger.reordered,
        server_kernel_drops=server.get("kernel_drops"),
        client_kernel_drops=client_stats.get("kernel_drops"),
        server_unsent=int(server.get("udp_unsent", 0)),
        bytes_echoed=ledger.bytes_echoed,
        client_received=client_stats.get("datagrams_received"),
        server_received=server.get("udp_received"),
        server_sent=server.get("udp_sent"),
    )


def tcp_account(ledgers: Sequence[TcpLedger], errors: Sequence[str]) -> TcpAccount:
    """The :class:`~horizon_drivers.bench.soak_verify.TcpAccount` of the connections' ledgers.

    Example:
        >>> ledger = TcpLedger(); ledger.receive(ledger.records(SizePlan(16, 16), 2))
        >>> tcp_account([ledger], []).failures()
        []
    """
    mismatches = [
        {"connection": i, "offset": ledger.mismatch, "record": ledger.mismatch_record or 0}
        for i, ledger in enumerate(ledgers) if ledger.mismatch is not None
    ]
    return TcpAccount(
        connections=len(ledgers),
        bytes_sent=sum(x.bytes_sent for x in ledgers),
        bytes_echoed=sum(x.bytes_echoed for x in ledgers),
        records_sent=sum(x.records_sent for x in ledgers),
        records_echoed=sum(x.records_echoed for x in ledgers),
        mismatches=mismatches,
        errors=list(errors),
    )


# -- progress -----------------------------------------------------------------------------------


class ProgressPrinter:
    """Progress lines on ``stream``: rewritten in place (``\\r``) on a terminal, plain lines
    otherwise.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> printer = ProgressPrinter(out, prefix="native ")
        >>> printer("udp 1.0s: sent 5"); printer.done()
        >>> out.getvalue()
        'horizon soak: native udp 1.0s: sent 5\\n'
    """

    def __init__(self, stream: IO[str], prefix: str = "") -> None:
        self.stream = stream
        self.prefix = prefix
        self.tty = stream.isatty()
        self._width = 0

    def __call__(self, line: str) -> None:
        text = f"horizon soak: {self.prefix}{line}"
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        """End an in-place line (a terminal's next output starts on a fresh line)."""
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
        self._width = 0


# -- the plan -----------------------------------------------------------------------------------


@attrs.frozen
class _Plan:
    drivers: tuple[str, ...]
    udp: bool
    tcp: bool
    seconds: float | None
    count: int | None
    sizes: SizePlan
    window: int
    connections: int
    grace: float
    config_path: str | None
    config: dict[str, Any]
    strict: bool
    json_path: str | None


def _plan(args: argparse.Namespace) -> _Plan:
    drivers = served_drivers() if args.all_drivers else (
        check_driver(args.driver or default_driver()),
    )
    if not args.udp and not args.tcp:
        raise CommandError("--no-udp without --tcp soaks nothing")
    seconds: float | None = args.duration
    count: int | None = args.count
    if count is None and seconds is None:
        seconds = _DEFAULT_DURATION
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise CommandError(f"--duration must be a positive number of seconds, got {seconds:g}")
    if count is not None and count < 1:
        raise CommandError(f"--count must be at least 1, got {count}")
    try:
        sizes = SizePlan.parse(args.size)
    except ValueError as exc:
        raise CommandError(f"--size: {exc}") from None
    if not 1 <= args.window <= _MAX_WINDOW:
        raise CommandError(f"--window must be 1..{_MAX_WINDOW}, got {args.window}")
    if not 1 <= args.connections <= _MAX_CONNECTIONS:
        raise CommandError(f"--connections must be 1..{_MAX_CONNECTIONS}, got {args.connections}")
    if not (math.isfinite(args.grace) and 0 <= args.grace <= _MAX_GRACE):
        raise CommandError(f"--grace must be 0..{_MAX_GRACE:g} seconds, got {args.grace:g}")
    config = load_config(args.config)
    return _Plan(drivers, args.udp, args.tcp, seconds, count, sizes, args.window,
                 args.connections, args.grace, args.config, _config_dict(config), args.strict,
                 args.json)


def _config_dict(config: Any) -> dict[str, Any]:
    return {k: v if isinstance(v, bool | int | float | str | None) else str(v)
            for k, v in attrs.asdict(config).items()}


def _placement() -> tuple[int | None, int | None]:
    """(server CPU, client CPU), or (None, None) with fewer than two usable CPUs."""
    from horizon_drivers.tuning import current_affinity

    cpus = current_affinity()
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


# -- running ------------------------------------------------------------------------------------


def _client_driver_name() -> str:
    return "native" if "native" in registry.available_drivers(sync_only=True) else "portable"


def _run_udp(plan: _Plan, driver: str, server_cpu: int | None, stop: Any,
             show: ProgressPrinter) -> dict[str, Any]:
    from horizon_drivers.bench.soak_client import Limit, ServerFailed, SoakServer, soak_udp

    client = registry.get_driver(_client_driver_name())
    run: dict[str, Any] = {"driver": driver, "protocol": "udp"}
    try:
        with SoakServer(driver, "udp", cpu=server_cpu, config=plan.config_path) as server:
            result = soak_udp(client, server.address, sizes=plan.sizes, window=plan.window,
                              limit=Limit(plan.seconds, plan.count), grace=plan.grace, stop=stop,
                              progress=lambda p: show(p.line()))
            totals: dict[str, Any] | None
            failures: list[str] = []
            try:
                totals = server.stop()
            except ServerFailed as exc:
                totals, failures = None, [str(exc)]
    except ServerFailed as exc:
        raise CommandError(f"{driver}: {exc}") from None
    finally:
        show.done()
    account = udp_account(result.ledger, result.client_stats, totals)
    failures += account.failures(strict=plan.strict)
    if result.error is not None:
        failures.append(result.error)
    run.update(
        passed=not failures, failures=failures, seconds=result.seconds,
        rate=result.ledger.echoed / result.seconds if result.seconds > 0 else 0.0,
        stalls=result.stalls, account=account.to_dict(), server=totals,
        client=result.client_stats,
    )
    return run


def _run_tcp(plan: _Plan, driver: str, server_cpu: int | None, stop: Any,
             show: ProgressPrinter) -> dict[str, Any]:
    from horizon_drivers.bench.soak_client import Limit, ServerFailed, SoakServer, soak_tcp

    client = registry.get_driver(_client_driver_name())
    run: dict[str, Any] = {"driver": driver, "protocol": "tcp"}
    try:
        with SoakServer(driver, "tcp", cpu=server_cpu, config=plan.config_path) as server:
            result = soak_tcp(client, server.address, sizes=plan.sizes,
                              connections=plan.connections,
                              limit=Limit(plan.seconds, plan.count), grace=plan.grace, stop=stop,
                              progress=lambda p: show(p.line()))
            totals: dict[str, Any] | None
            failures: list[str] = []
            try:
                totals = server.stop()
            except ServerFailed as exc:
                totals, failures = None, [str(exc)]
    except ServerFailed as exc:
        raise CommandError(f"{driver}: {exc}") from None
    finally:
        show.done()
    account = tcp_account(result.ledgers, result.errors)
    failures += account.failures()
    run.update(
        passed=not failures, failures=failures, seconds=result.seconds,
        bytes_per_s=account.bytes_echoed / result.seconds if result.seconds > 0 else 0.0,
        account=account.to_dict(), server=totals,
    )
    return run


def _summary(run: dict[str, Any]) -> str:
    verdict = "PASS" if run["passed"] else "FAIL"
    a = run["account"]
    head = f"horizon soak: {run['driver']} {run['protocol']}: {verdict} after {run['seconds']:.1f}s"
    if run["protocol"] == "udp":

        def n(value: int | None) -> str:
            return "n/a" if value is None else f"{value:,}"

        text = (f"{head}: sent {a['sent']:,} = echoed {a['echoed']:,} + corrupted "
                f"{a['corrupted']:,} + server drops {n(a['server_kernel_drops'])} + client drops "
                f"{n(a['client_kernel_drops'])} + server unsent {a['server_unsent']:,} + "
                f"unexplained {a['unexplained']:,}; duplicates {a['duplicates']:,}, reordered "
                f"{a['reordered']:,}; {run['rate']:,.0f} echoed/s")
    else:
        text = (f"{head}: {a['records_echoed']:,} of {a['records_sent']:,} records, "
                f"{a['bytes_echoed']:,} of {a['bytes_sent']:,} bytes echoed intact over "
                f"{a['connections']} connection{'s' if a['connections'] != 1 else ''}")
    return "\n".join([text, *(f"horizon soak:   {reason}" for reason in run["failures"])])


def run(args: argparse.Namespace) -> int:
    """Run the soak; print a summary per run; exit 0 (passed), 1 (a problem found) or 2."""
    from horizon_drivers.cli.echo_service import StopFlag, stop_on_signals
    from horizon_drivers.cli.machine import describe_machine
    from horizon_drivers.tuning import current_affinity, pin_to_cpus

    plan = _plan(args)
    server_cpu, client_cpu = _placement()
    affinity = current_affinity()
    runs: list[dict[str, Any]] = []
    stop = StopFlag()
    protocols = [p for p, on in (("udp", plan.udp), ("tcp", plan.tcp)) if on]
    out = sys.stderr if plan.json_path == "-" else sys.stdout  # stdout holds the JSON then
    try:
        if client_cpu is not None:
            pin_to_cpus([client_cpu])
        with stop_on_signals(stop):
            for driver in plan.drivers:
                for protocol in protocols:
                    if stop.is_set():
                        break
                    show = ProgressPrinter(sys.stderr, prefix=f"{driver} ")
                    soak = _run_udp if protocol == "udp" else _run_tcp
                    result = soak(plan, driver, server_cpu, stop, show)
                    runs.append(result)
                    print(_summary(result), file=out, flush=True)
    finally:
        if client_cpu is not None:
            pin_to_cpus(affinity)
    clean = all(r["passed"] for r in runs)
    passed = bool(runs) and clean and not stop.is_set()
    if stop.is_set():
        print("horizon soak: interrupted; the runs above were accounted for up to the stop",
              file=out, flush=True)
    verdict = "PASS" if passed else "FAIL" if not clean else "INTERRUPTED"
    print(f"horizon soak: {verdict}", file=out, flush=True)
    if plan.json_path is not None:
        _write_json(plan, runs, passed, server_cpu, client_cpu, describe_machine().to_dict())
    if not clean:
        return EXIT_SOAK_FAILED
    return EXIT_INTERRUPTED if stop.is_set() else 0


def _write_json(plan: _Plan, runs: list[dict[str, Any]], passed: bool, server_cpu: int | None,
                client_cpu: int | None, machine: dict[str, object]) -> None:
    document = {
        "command": "soak",
        "version": __version__,
        "passed": passed,
        "settings": {
            "drivers": list(plan.drivers), "udp": plan.udp, "tcp": plan.tcp,
            "duration": plan.seconds, "count": plan.count, "size": plan.sizes.describe(),
            "window": plan.window, "connections": plan.connections, "grace": plan.grace,
            "strict": plan.strict, "client_driver": _client_driver_name(),
            "server_cpu": server_cpu, "client_cpu": client_cpu,
        },
        "config": {"path": plan.config_path, "fields": plan.config},
        "machine": machine,
        "runs": runs,
    }
    text = json.dumps(document, indent=2) + "\n"
    assert plan.json_path is not None
    if plan.json_path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        with open(plan.json_path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise CommandError(f"cannot write --json {plan.json_path}: {exc.strerror or exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m horizon_drivers.cli.soak ARGS``: the subcommand without the ``horizon`` parser
    (until it is registered there), with the same one-line failures and exit statuses."""

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:
            raise CommandError(f"{message} (see {self.prog} --help)")

    parser = _Parser(prog="horizon")
    add_parser(parser.add_subparsers(required=True, parser_class=_Parser))
    try:
        args = parser.parse_args(["soak", *(sys.argv[1:] if argv is None else argv)])
        command: Callable[[argparse.Namespace], int] = args.command
        return command(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:
        line = explain(exc)
        if line is None:
            raise
        print(f"horizon: error: {line}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
