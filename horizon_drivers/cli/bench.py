"""``horizon bench``: UDP and TCP echo on loopback, Horizon's drivers against what people use.

For each available driver (``native``, ``portable``, ``aio``...) and each peer (a stdlib blocking
loop, asyncio, uvloop when installed, plain anyio), bench starts the echo server in a process of
its own pinned to one CPU and the load generator in another process pinned to a second CPU, then
measures:

* UDP: datagrams per second with ``--window`` datagrams outstanding (the native C load
  generator: sendmmsg/recvmmsg, faster than anything it measures), and the round trip
  p50/p99/p99.9 with one datagram in flight;
* TCP: echoed bytes per second streaming 64 KiB writes on ``--connections`` connections, the
  round trip of ``--size``-byte ping-pong messages, and messages per second with
  ``--pipeline`` ``--size``-byte messages in flight on one connection, each message's round trip
  timed too (the native C load generator: nonblocking sockets and poll in one thread; where it
  is unavailable, a Python client measures TCP throughput and ping-pong instead and the output
  says so).

Peer ``c`` is the C reference server (:mod:`horizon_drivers.bench.reference`: epoll with
recvmmsg/sendmmsg, a level-triggered epoll TCP echo), the machine's limit: where it is built
(Linux) it runs by default, and every row also shows its ratio to it (``x c``).

Round-trip CDFs come from the generator's quantiles (every percent and the tail), not just a few
percentiles.

That is ``--scenario echo``, the default. The other scenarios
(:mod:`horizon_drivers.bench.scenarios`) run in ``--rounds`` interleaved rounds and report
medians: ``gso`` (UDP: native GSO replies vs plain sendmmsg vs C vs stdlib and uvloop), ``spin``
(the UDP round trip, spinning vs blocking: native, aio and C), ``tcp-spin`` (the TCP ping-pong
round trip and pipelined messages, spinning vs blocking: native, aio and C) and
``aio-backends`` (UDP: the anyio driver on asyncio, uvloop and trio vs plain anyio vs uvloop).

``--scenario echo`` prints a table with ratios to ``--baseline`` (default ``stdlib``: higher is
better for every ratio) and to ``c``, progress on stderr while it runs, and the machine it ran on; ``--json
FILE`` writes every number, ``--plot FILE.png`` draws latency CDFs and throughput bars (matplotlib). Each
measurement runs ``--duration`` seconds; the defaults take about a minute.

Example:
    >>> parse_names("native, aio", ("native", "aio", "sim"), "--drivers")
    ('native', 'aio')
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from horizon_drivers import registry
from horizon_drivers.bench.child import PYTHON_FALLBACK, load_generator_status
from horizon_drivers.bench.peers import PEER_NAMES, peer_status
from horizon_drivers.bench.reference import REFERENCE
from horizon_drivers.bench.report import PROTOCOLS, BenchReport, Contender, RoundsReport, RoundsRow
from horizon_drivers.bench.runner import Measurement, Placement, measure
from horizon_drivers.bench.scenarios import (
    ROUNDS_SCENARIOS,
    SCENARIO_NAMES,
    SPIN_SCENARIOS,
    Scenario,
)
from horizon_drivers.cli.echo_service import IN_MEMORY_DRIVERS
from horizon_drivers.cli.failures import CommandError
from horizon_drivers.cli.machine import describe_machine
from horizon_drivers.cli.tables import format_table
from horizon_drivers.tuning import current_affinity

__all__ = [
    "add_parser",
    "parse_names",
    "render_rounds",
    "render_table",
    "run",
]

# The load generator's limits: its receive slots are 2048 bytes, and RTT stamps need 16 bytes.
_MIN_SIZE, _MAX_SIZE = 16, 2048
_MAX_WINDOW = 1024
_MAX_CONNECTIONS = 64
_MAX_PIPELINE = 4096
_DEFAULT_PIPELINE = 256
_MAX_ROUNDS = 100
_MIN_BUFFER, _MAX_BUFFER = 4096, 1 << 30
_MAX_SPIN_BUDGET = 1_000_000
# Options only the echo scenario reads (their defaults are None so a given one can be told).
_ECHO_ONLY = ("drivers", "peers", "baseline", "connections", "pipeline", "plot")


def parse_names(text: str | None, known: Sequence[str], option: str) -> tuple[str, ...]:
    """Split a comma-separated ``--drivers``/``--peers`` value; ``none`` selects nothing.

    Example:
        >>> parse_names("none", ("a",), "--peers")
        ()
        >>> parse_names("b", ("a",), "--peers")
        Traceback (most recent call last):
        ...
        horizon_drivers.cli.failures.CommandError: unknown name 'b' in --peers; known: a
        >>> parse_names(" , ", ("a",), "--drivers")
        Traceback (most recent call last):
        ...
        horizon_drivers.cli.failures.CommandError: --drivers names nothing; give names (known: a) or 'none'
    """
    if text is None:
        return tuple(known)
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        # An empty value is a mistake (an unset shell variable), not a request for everything.
        raise CommandError(
            f"{option} names nothing; give names (known: {', '.join(known)}) or 'none'"
        )
    if names == ("none",):
        return ()
    for name in names:
        if name not in known:
            raise CommandError(f"unknown name {name!r} in {option}; known: {', '.join(known)}")
    return tuple(dict.fromkeys(names))


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="benchmark the drivers against stdlib, asyncio, uvloop and anyio on loopback",
        description="UDP and TCP echo on loopback: each server pinned to one CPU, the native "
        "load generator to another; datagrams/s, MB/s and round-trip percentiles, with ratios "
        "to a baseline. The defaults take about a minute.",
    )
    parser.add_argument("--scenario", default="echo", metavar="NAME",
                        help="what to measure: echo (default: every driver and peer, UDP and "
                        "TCP), gso (native GSO replies vs plain vs stdlib/uvloop UDP), spin "
                        "(UDP spin-budget round trip), tcp-spin (TCP round trip and pipelined "
                        "messages, spinning vs blocking), aio-backends (anyio driver on each "
                        "backend vs plain anyio vs uvloop)")
    parser.add_argument("--rounds", type=int, default=None, metavar="N",
                        help="interleaved rounds per server, medians reported (gso, spin, "
                        "tcp-spin, aio-backends; default 3)")
    parser.add_argument("--buffer", type=int, default=4 * 1024 * 1024, metavar="BYTES",
                        help="server SO_RCVBUF/SO_SNDBUF in gso, spin, tcp-spin, aio-backends "
                        "(default 4 MiB)")
    parser.add_argument("--spin-budget", type=int, default=50, metavar="US",
                        help="spin budget of the spinning servers in spin and tcp-spin "
                        "(default 50)")
    parser.add_argument("--duration", type=float, default=1.5, metavar="SECONDS",
                        help="seconds per measurement (default 1.5: about a minute in all)")
    parser.add_argument("--drivers", metavar="LIST",
                        help=f"comma-separated drivers (default: every available one; known: "
                        f"{', '.join(registry.DRIVER_NAMES)}; 'none' for no driver)")
    parser.add_argument("--peers", metavar="LIST",
                        help=f"comma-separated peers (default: all available: "
                        f"{', '.join(PEER_NAMES)}; c is the C reference server; 'none' for "
                        "no peer)")
    parser.add_argument("--baseline", default=None,
                        help="the contender ratios are relative to (default stdlib)")
    parser.add_argument("--size", type=int, default=64, metavar="BYTES",
                        help="UDP datagram and TCP ping-pong/pipelined message size (default 64)")
    parser.add_argument("--window", type=int, default=64, metavar="N",
                        help="UDP datagrams outstanding in the throughput run (default 64)")
    parser.add_argument("--connections", type=int, default=None, metavar="N",
                        help="TCP connections streaming at once in the throughput run (default 1)")
    parser.add_argument("--pipeline", type=int, default=None, metavar="N",
                        help=f"TCP messages in flight in the pipelined run (default "
                        f"{_DEFAULT_PIPELINE})")
    parser.add_argument("--json", metavar="FILE", help="write every number as JSON")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="draw latency CDFs and throughput bars (needs matplotlib)")
    parser.set_defaults(command=run)
    return parser


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _connections(settings: dict[str, Any]) -> str:
    count = settings.get("connections", 1)
    return f", {count} TCP connections" if count != 1 else ""


def _reference_ran(report: BenchReport) -> bool:
    return any(c.name == REFERENCE and c.skipped is None for c in report.contenders)


def render_table(report: BenchReport) -> str:
    """The bench table, its heading (settings, machine) and the notes under it."""
    s = report.settings
    base = report.baseline
    with_c = _reference_ran(report)
    # With c as the baseline, its ratio columns are the "x c" ones: not shown twice.
    with_base = not (with_c and base == REFERENCE)
    rows = []
    notes: list[str] = []
    fallbacks: set[str] = set()

    def to_base(protocol: str, key: str) -> list[str]:
        return [_ratio(report.ratio(c.name, protocol, key))] if with_base else []

    def to_c(protocol: str, key: str) -> list[str]:
        return [_ratio(report.ratio(c.name, protocol, key, REFERENCE))] if with_c else []

    for c in report.contenders:
        if c.skipped:
            notes.append(f"{c.name}: skipped ({c.skipped})")
            continue
        udp, tcp = c.rtt("udp"), c.rtt("tcp")
        mbps = c.value("tcp", "bytes_per_s")
        rows.append([
            c.name, c.kind,
            _num(c.value("udp", "datagrams_per_s")),
            *to_base("udp", "datagrams_per_s"),
            *to_c("udp", "datagrams_per_s"),
            _num(udp.p50_us if udp else None, 1), _num(udp.p99_us if udp else None, 1),
            _num(udp.p999_us if udp else None, 1),
            _num(c.cpu_us_per_datagram(), 2),
            _num(mbps / 1e6 if mbps is not None else None, 1),
            *to_base("tcp", "bytes_per_s"),
            *to_c("tcp", "bytes_per_s"),
            _num(c.value("tcp", "messages_per_s")),
            *to_c("tcp", "messages_per_s"),
            _num(tcp.p50_us if tcp else None, 1), _num(tcp.p99_us if tcp else None, 1),
            _num(tcp.p999_us if tcp else None, 1),
        ])
        notes.extend(
            f"{c.name} {m.protocol}: {m.error}" for m in (c.udp, c.tcp) if m is not None and m.error
        )
        fallback = c.tcp.result if c.tcp is not None else None
        if fallback and fallback.get("load_generator") == PYTHON_FALLBACK:
            fallbacks.add(str(fallback.get("load_generator_note", "")))
    xc = ["x c"] if with_c else []
    xbase = [f"x{base}"] if with_base else []
    headers = ["server", "kind", "UDP dgram/s", *xbase, *xc, "p50 us", "p99 us", "p99.9 us",
               "CPU µs/dgram", "TCP MB/s", *xbase, *xc, "TCP msg/s", *xc, "p50 us", "p99 us",
               "p99.9 us"]
    legend = [f"x{base}: throughput relative to {base} (higher is better)"] if with_base else []
    if with_c:
        legend.append("x c: relative to c, the C reference server (the machine's limit"
                      + (")" if with_base else "; higher is better)"))
    pipeline = s.get("pipeline", _DEFAULT_PIPELINE)
    lines = [
        f"horizon bench: loopback echo, {s['duration']}s per measurement, {s['size']}-byte "
        f"messages, UDP window {s['window']}{_connections(s)}, TCP pipeline {pipeline}; "
        f"{s['placement']}",
        f"machine: {report.machine.summary()}",
        "",
        format_table(headers, rows),
        "",
        "; ".join(legend) + ".",
        "CPU µs/dgram: the server process's CPU time over the windowed UDP run / the datagrams "
        "it echoed there, the same offered load for every server (lower is better; steadier "
        "than throughput on a shared machine).",
        "Round trips (us) have one message in flight: UDP window 1, TCP ping-pong. TCP msg/s: "
        f"{pipeline} messages in flight on one connection (their round trips are in --json).",
    ]
    lines += sorted(note for note in fallbacks if note)
    lines += notes
    return "\n".join(lines)


# -- the command --------------------------------------------------------------------------------


def _contenders(args: argparse.Namespace) -> list[Contender]:
    """Who runs, in table order (drivers, then peers); the unavailable ones carry the reason."""
    chosen: list[Contender] = []
    explicit_drivers = args.drivers is not None
    for name in parse_names(args.drivers, registry.DRIVER_NAMES, "--drivers"):
        status = registry.driver_status(name)
        if name in IN_MEMORY_DRIVERS:
            if explicit_drivers:
                chosen.append(Contender(name, "driver", skipped=IN_MEMORY_DRIVERS[name]))
        elif status.available:
            chosen.append(Contender(name, "driver"))
        else:
            chosen.append(Contender(name, "driver", skipped=status.reason))
    for name in parse_names(args.peers, PEER_NAMES, "--peers"):
        peer = peer_status(name)
        chosen.append(Contender(name, "peer", skipped=None if peer.available else peer.reason))
    if not any(c.skipped is None for c in chosen):
        raise CommandError("nothing to measure: every chosen driver and peer is unavailable")
    return chosen


def _validate(args: argparse.Namespace) -> None:
    if args.scenario not in SCENARIO_NAMES:
        raise CommandError(f"unknown --scenario {args.scenario!r}; known: "
                           f"{', '.join(SCENARIO_NAMES)}")
    if args.scenario == "echo":
        if args.rounds not in (None, 1):
            raise CommandError("--rounds applies to --scenario gso, spin, tcp-spin and "
                               "aio-backends")
    else:
        given = [f"--{name}" for name in _ECHO_ONLY if getattr(args, name) is not None]
        if given:
            raise CommandError(f"{', '.join(given)} applies to --scenario echo only")
        if args.rounds is None:
            args.rounds = 3
        if not 1 <= args.rounds <= _MAX_ROUNDS:
            raise CommandError(f"--rounds must be 1 to {_MAX_ROUNDS}, got {args.rounds}")
    if not _MIN_BUFFER <= args.buffer <= _MAX_BUFFER:
        raise CommandError(
            f"--buffer must be {_MIN_BUFFER} to {_MAX_BUFFER} bytes, got {args.buffer}"
        )
    if not 0 <= args.spin_budget <= _MAX_SPIN_BUDGET:
        raise CommandError(
            f"--spin-budget must be 0 to {_MAX_SPIN_BUDGET} us, got {args.spin_budget}"
        )
    args.baseline = "stdlib" if args.baseline is None else args.baseline
    args.connections = 1 if args.connections is None else args.connections
    args.pipeline = _DEFAULT_PIPELINE if args.pipeline is None else args.pipeline
    if not 0.05 <= args.duration <= 600:
        raise CommandError(f"--duration must be 0.05 to 600 seconds, got {args.duration}")
    if not _MIN_SIZE <= args.size <= _MAX_SIZE:
        raise CommandError(f"--size must be {_MIN_SIZE} to {_MAX_SIZE} bytes, got {args.size}")
    if not 1 <= args.window <= _MAX_WINDOW:
        raise CommandError(f"--window must be 1 to {_MAX_WINDOW}, got {args.window}")
    if not 1 <= args.connections <= _MAX_CONNECTIONS:
        raise CommandError(
            f"--connections must be 1 to {_MAX_CONNECTIONS}, got {args.connections}"
        )
    if not 1 <= args.pipeline <= _MAX_PIPELINE:
        raise CommandError(f"--pipeline must be 1 to {_MAX_PIPELINE}, got {args.pipeline}")
    for option, value in (("--json", args.json), ("--plot", getattr(args, "plot", None))):
        if value:
            _check_writable(option, Path(value))
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CommandError(
                "--plot needs matplotlib: pip install matplotlib (or horizon-sockets[bench])"
            ) from None


def _placement() -> Placement:
    cpus = current_affinity()
    return Placement(cpus[0], cpus[1]) if len(cpus) >= 2 else Placement(None, None)


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _describe(m: Measurement) -> str:
    if m.result is None:
        return f"failed: {m.error}"
    rtt = m.result.get("rtt") or {}
    p50 = rtt.get("p50_us") if isinstance(rtt, dict) else None
    latency = f", p50 {p50:.1f} us" if isinstance(p50, float) else ""
    if m.protocol == "udp":
        return f"{m.result['datagrams_per_s']:,.0f} datagrams/s{latency}"
    messages = m.result.get("messages_per_s")
    pipelined = f", {messages:,.0f} messages/s" if isinstance(messages, int | float) else ""
    return f"{m.result['bytes_per_s'] / 1e6:,.1f} MB/s{pipelined}{latency}"


def run(args: argparse.Namespace) -> int:
    """Run ``--scenario``; print its table, write ``--json`` (and ``--plot`` for echo)."""
    _validate(args)
    if args.scenario != "echo":
        return _run_rounds(args, ROUNDS_SCENARIOS[args.scenario])
    contenders = _contenders(args)
    names = [c.name for c in contenders]
    if args.baseline not in names:
        raise CommandError(f"--baseline {args.baseline!r} is not measured; pick one of "
                           f"{', '.join(names)}")
    placement = _placement()
    loadgen_ok, loadgen_reason = load_generator_status()
    warmup = _warmup(args.duration)
    runnable = [c for c in contenders if c.skipped is None]
    total = len(runnable) * len(PROTOCOLS)
    _progress(
        f"horizon bench: {len(runnable)} servers x {len(PROTOCOLS)} protocols, "
        f"about {total * (2.5 * (args.duration + warmup) + 0.6):.0f}s; {placement.describe()}"
    )
    if not loadgen_ok:
        _progress(f"  note: {loadgen_reason}: UDP is not measured, TCP falls back to the Python "
                  "client (slower; its numbers are a floor)")
    started = time.monotonic()
    done = 0
    measured: list[Contender] = []
    for contender in contenders:
        if contender.skipped is not None:
            _progress(f"  {contender.name}: skipped ({contender.skipped})")
            measured.append(contender)
            continue
        results: dict[str, Measurement] = {}
        for protocol in PROTOCOLS:
            done += 1
            if protocol == "udp" and not loadgen_ok:
                results[protocol] = Measurement(protocol, None, loadgen_reason)
            else:
                results[protocol] = measure(
                    contender.name, protocol, placement, duration=args.duration,
                    warmup=warmup, size=args.size, window=args.window,
                    connections=args.connections, pipeline=args.pipeline,
                )
            _progress(f"  [{done}/{total}] {contender.name} {protocol}: "
                      f"{_describe(results[protocol])}")
        measured.append(attrs.evolve(contender, udp=results["udp"], tcp=results["tcp"]))
    settings = {
        "duration": args.duration, "warmup": warmup, "size": args.size, "window": args.window,
        "connections": args.connections, "pipeline": args.pipeline,
        "load_generator": "native" if loadgen_ok else PYTHON_FALLBACK,
        "scenario": "echo",
        "placement": placement.describe(), "server_cpu": placement.server_cpu,
        "load_cpu": placement.load_cpu, "elapsed": round(time.monotonic() - started, 1),
    }
    report = BenchReport(describe_machine(), settings, args.baseline, tuple(measured))
    print(render_table(report), flush=True)
    if args.json:
        _write(Path(args.json), json.dumps(report.to_dict(), indent=2) + "\n")
    if args.plot:
        from horizon_drivers.bench.plot import draw

        draw(report, Path(args.plot))
    return 0


def _warmup(duration: float) -> float:
    return round(min(0.25, duration / 4), 3)


def _run_rounds(args: argparse.Namespace, scenario: Scenario) -> int:
    """Interleaved rounds of every available server in ``scenario``; medians in the table."""
    loadgen_ok, loadgen_reason = load_generator_status()
    if not loadgen_ok:
        raise CommandError(f"--scenario {scenario.name} needs {loadgen_reason[4:]}")
    placement = _placement()
    warmup = _warmup(args.duration)
    entries = scenario.entries(args.spin_budget)
    skipped = {e: e.unavailable() for e in entries}
    runnable = [e for e in entries if skipped[e] is None]
    if not runnable:
        raise CommandError(f"nothing to measure in --scenario {scenario.name}: every server "
                           "is unavailable")
    total = len(runnable) * args.rounds
    _progress(f"horizon bench --scenario {scenario.name}: {len(runnable)} servers x "
              f"{args.rounds} rounds, about {total * (args.duration + warmup + 0.6):.0f}s; "
              f"{placement.describe()}")
    for entry, reason in skipped.items():
        if reason is not None:
            _progress(f"  {entry.label} {entry.backend}: skipped ({reason})")
    started = time.monotonic()
    rounds: dict[int, list[Measurement]] = {i: [] for i in range(len(entries))}
    done = 0
    for number in range(1, args.rounds + 1):
        for index, entry in enumerate(entries):
            if skipped[entry] is not None:
                continue
            done += 1
            m = measure(entry.contender, scenario.protocol, placement, duration=args.duration,
                        warmup=warmup, size=args.size, window=args.window, mode=scenario.mode,
                        server_args=(*entry.server_args, "--buffer", str(args.buffer)))
            rounds[index].append(m)
            _progress(f"  [{done}/{total}] round {number}: {entry.label} {entry.backend}"
                      f"{' ' if entry.backend else ''}{_describe_round(m, scenario)}")
    rows = tuple(
        RoundsRow(e.label, e.contender, e.backend, tuple(rounds[i]), skipped[e])
        for i, e in enumerate(entries)
    )
    settings = {
        "scenario": scenario.name, "rounds": args.rounds, "duration": args.duration,
        "warmup": warmup, "size": args.size,
        "window": 1 if scenario.mode == "rtt" else args.window, "buffer": args.buffer,
        "spin_budget": args.spin_budget if scenario.name in SPIN_SCENARIOS else None,
        "protocol": scenario.protocol,
        "placement": placement.describe(), "server_cpu": placement.server_cpu,
        "load_cpu": placement.load_cpu, "elapsed": round(time.monotonic() - started, 1),
    }
    report = RoundsReport(describe_machine(), scenario.name, settings, rows)
    print(render_rounds(report, scenario.title), flush=True)
    if args.json:
        _write(Path(args.json), json.dumps(report.to_dict(), indent=2) + "\n")
    return 0


def _describe_round(m: Measurement, scenario: Scenario) -> str:
    if m.result is None:
        return f"failed: {m.error}"
    cpu = f", server CPU {m.server_cpu_seconds:.2f}s" if m.server_cpu_seconds else ""
    if scenario.mode == "rtt":
        rtt = m.result.get("rtt") or {}
        if scenario.protocol == "tcp":
            return (f"p50 {rtt.get('p50_us', 0.0):.1f} us, "
                    f"{m.result.get('messages_per_s', 0.0):,.0f} messages/s pipelined{cpu}")
        return f"p50 {rtt.get('p50_us', 0.0):.1f} us{cpu}"
    return f"{m.result['rate']:,.0f} datagrams/s, lost {m.result['lost']}{cpu}"


def _over(row: RoundsRow, base: RoundsRow | None) -> float | None:
    a = row.summary().get("median_rate")
    b = base.summary().get("median_rate") if base is not None else None
    return a / b if a is not None and b else None


def _ratio_columns(report: RoundsReport) -> list[tuple[str, Callable[[RoundsRow], float | None]]]:
    """The x-columns of a throughput scenario: over stdlib and uvloop (gso), over plain anyio
    on the same backend and over uvloop-protocol (aio-backends)."""

    def over(label: str) -> Callable[[RoundsRow], float | None]:
        return lambda row: _over(row, report.row(label))

    def over_plain(row: RoundsRow) -> float | None:
        plain = next((r for r in report.rows
                      if r.label == "anyio-plain" and r.backend == row.backend), None)
        return _over(row, plain)

    if report.scenario == "gso":
        return [("xstdlib", over("stdlib")), ("xuvloop", over("uvloop")),
                ("x c", lambda row: report.ratio_to_c(row.label))]
    return [("xanyio-plain", over_plain), ("xuvloop-protocol", over("uvloop-protocol"))]


def _spin_cuts(report: RoundsReport) -> list[str]:
    """A line per server measured both ways: how its spin budget moved the median round trip."""
    lines = []
    for row in report.rows:
        name = row.label.removesuffix("-spin")
        if name == row.label or name == REFERENCE:
            continue
        cut = report.ratio(row.label, f"{name}-blocking", "p50_us")
        if cut is not None:
            lines.append(f"{name}: spin budget changes the median round trip by {cut - 1:+.0%}")
    return lines


def render_rounds(report: RoundsReport, title: str) -> str:
    """The table of a rounds scenario (medians over rounds), its heading and notes."""
    s = report.settings
    rtt = report.scenario in SPIN_SCENARIOS
    tcp = s.get("protocol") == "tcp"
    backend = any(r.backend for r in report.rows)
    rows: list[list[str]] = []
    notes: list[str] = []
    ratios = [] if rtt else _ratio_columns(report)
    for r in report.rows:
        if r.skipped:
            notes.append(f"{r.label} {r.backend}: skipped ({r.skipped})".replace("  ", " "))
            continue
        notes.extend(f"{r.label} {r.backend}: {e}".replace("  ", " ") for e in r.errors())
        m = r.summary()
        cells = [r.label] + ([r.backend] if backend else [])
        if tcp:
            pipelined = report.ratio(r.label, report.c_label(r.label))
            cells += [_num(m.get("p50_us"), 1), _num(m.get("p99_us"), 1),
                      _num(m.get("p999_us"), 1), _ratio(report.ratio_to_c(r.label)),
                      _num(m.get("median_rate")), _ratio(pipelined), _num(m.get("samples"))]
        elif rtt:
            cells += [_num(m.get("p50_us"), 1), _num(m.get("p99_us"), 1),
                      _num(m.get("p999_us"), 1), _ratio(report.ratio_to_c(r.label)),
                      _num(m.get("median_rate")),
                      _num(m.get("per_cpu_second")), _num(m.get("samples"))]
        else:
            cells += [_num(m.get("median_rate")), _num(m.get("best_rate"))]
            cells += [_ratio(column(r)) for _, column in ratios]
            cells += [_num(m.get("per_cpu_second")), _num(m.get("lost"))]
        rows.append(cells)
    headers = ["server"] + (["backend"] if backend else [])
    if tcp:
        headers += ["p50 us", "p99 us", "p99.9 us", "x c", "pipelined msg/s", "x c",
                    "samples"]
    elif rtt:
        headers += ["p50 us", "p99 us", "p99.9 us", "x c", "trips/s", "per CPU-s", "samples"]
    else:
        headers += ["median/s", "best/s", *(name for name, _ in ratios), "per CPU-s", "lost"]
    if tcp:
        shape = (f"{s['size']}-byte messages on one connection: ping-pong with the client "
                 "spinning, then 256 in flight")
    else:
        window = "window 1, the client spinning" if rtt else f"window {s['window']}"
        shape = f"{s['size']}-byte datagrams, {window}"
    lines = [
        f"horizon bench --scenario {report.scenario}: {title}; {shape}, "
        f"{s['rounds']} interleaved round(s) of {s['duration']}s; {s['placement']}",
        f"machine: {report.machine.summary()}",
        "",
        format_table(headers, rows),
        "",
        "Medians over rounds."
        + ("" if tcp else " per CPU-s: replies per second of server CPU time (steadier than "
           "replies per second on a shared machine)."),
    ]
    if tcp:
        lines.append(f"-spin rows: NetConfig.spin_budget={s['spin_budget']} us (the C server "
                     "spins as long); -blocking rows: the same servers blocking. aio's spinning "
                     "receives retry at every event-loop pass.")
        lines.append("x c: against the C row of the same mode: its p50 over this row's, then "
                     "this row's pipelined messages/s over its (higher is better).")
        lines.extend(_spin_cuts(report))
    elif rtt:
        lines.append(f"-spin rows: NetConfig.spin_budget={s['spin_budget']} us; "
                     "-blocking: the same servers blocking (aio: its batch calls); "
                     "c-spin, c-blocking: the C reference server spinning as long, and blocking.")
        lines.append("x c: the C row of the same mode's p50 over this row's (higher is better).")
        lines.extend(_spin_cuts(report))
    elif report.scenario == "gso":
        lines.append("x c: median rate relative to c, the C reference server (recvmmsg/sendmmsg "
                     "echo, no GSO).")
    return "\n".join(lines + notes)


def _check_writable(option: str, path: Path) -> None:
    """Refuse an output file that cannot be written before measuring for a minute, not after."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise CommandError(f"{option} {path}: is a folder; name a file")
    if not folder.is_dir():
        raise CommandError(f"{option} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CommandError(f"{option} {path}: not writable")


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
