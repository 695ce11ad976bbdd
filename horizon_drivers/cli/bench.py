"""``horizon bench``: UDP and TCP echo on loopback, Horizon's drivers against what people use.

For each available driver (``native``, ``portable``, ``aio``...) and each peer (a stdlib blocking
loop, asyncio, uvloop when installed, plain anyio), bench starts the echo server in a process of
its own pinned to one CPU and the load generator in another process pinned to a second CPU, then
measures:

* UDP: datagrams per second with ``--window`` datagrams outstanding (the native C load
  generator: sendmmsg/recvmmsg, faster than anything it measures), and the round trip
  p50/p99/p99.9 with one datagram in flight;
* TCP: echoed bytes per second streaming 64 KiB writes on ``--connections`` connections, and
  the round trip of ``--size``-byte ping-pong messages (the native C load generator too:
  nonblocking sockets and poll in one thread; where it is unavailable, a Python client measures
  TCP instead and the output says so).

Round-trip CDFs come from the generator's quantiles (every percent and the tail), not just a few
percentiles.

It prints a table with ratios to ``--baseline`` (default ``stdlib``: higher is better for every
ratio), progress on stderr while it runs, and the machine it ran on; ``--json FILE`` writes every
number, ``--plot FILE.png`` draws latency CDFs and throughput bars (matplotlib). Each
measurement runs ``--duration`` seconds; the defaults take about a minute.

Example:
    >>> parse_names("native, aio", ("native", "aio", "sim"), "--drivers")
    ('native', 'aio')
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from horizon_drivers import registry
from horizon_drivers.bench.child import PYTHON_FALLBACK, load_generator_status
from horizon_drivers.bench.latency import LatencySummary
from horizon_drivers.bench.peers import PEER_NAMES, peer_status
from horizon_drivers.bench.runner import Measurement, Placement, measure
from horizon_drivers.cli.echo_service import IN_MEMORY_DRIVERS
from horizon_drivers.cli.failures import CommandError
from horizon_drivers.cli.machine import MachineDescription, describe_machine
from horizon_drivers.cli.tables import format_table
from horizon_drivers.tuning import current_affinity

__all__ = [
    "BenchReport",
    "Contender",
    "add_parser",
    "parse_names",
    "render_table",
    "run",
]

_PROTOCOLS = ("udp", "tcp")
# The load generator's limits: its receive slots are 2048 bytes, and RTT stamps need 16 bytes.
_MIN_SIZE, _MAX_SIZE = 16, 2048
_MAX_WINDOW = 1024
_MAX_CONNECTIONS = 64


def parse_names(text: str | None, known: Sequence[str], option: str) -> tuple[str, ...]:
    """Split a comma-separated ``--drivers``/``--peers`` value; ``none`` selects nothing.

    Example:
        >>> parse_names("none", ("a",), "--peers")
        ()
        >>> parse_names("b", ("a",), "--peers")
        Traceback (most recent call last):
        ...
        horizon_drivers.cli.failures.CommandError: unknown name 'b' in --peers; known: a
    """
    if text is None:
        return tuple(known)
    names = tuple(n.strip() for n in text.split(",") if n.strip())
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
    parser.add_argument("--duration", type=float, default=1.5, metavar="SECONDS",
                        help="seconds per measurement (default 1.5: about a minute in all)")
    parser.add_argument("--drivers", metavar="LIST",
                        help=f"comma-separated drivers (default: every available one; known: "
                        f"{', '.join(registry.DRIVER_NAMES)}; 'none' for no driver)")
    parser.add_argument("--peers", metavar="LIST",
                        help=f"comma-separated peers (default: all available: "
                        f"{', '.join(PEER_NAMES)}; 'none' for no peer)")
    parser.add_argument("--baseline", default="stdlib",
                        help="the contender ratios are relative to (default stdlib)")
    parser.add_argument("--size", type=int, default=64, metavar="BYTES",
                        help="UDP datagram and TCP ping-pong message size (default 64)")
    parser.add_argument("--window", type=int, default=64, metavar="N",
                        help="UDP datagrams outstanding in the throughput run (default 64)")
    parser.add_argument("--connections", type=int, default=1, metavar="N",
                        help="TCP connections streaming at once in the throughput run (default 1)")
    parser.add_argument("--json", metavar="FILE", help="write every number as JSON")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="draw latency CDFs and throughput bars (needs matplotlib)")
    parser.set_defaults(command=run)
    return parser


# -- the report ---------------------------------------------------------------------------------


@attrs.frozen
class Contender:
    """One server measured (or skipped, with the reason).

    Example:
        >>> Contender("uvloop", "peer", skipped="uvloop is not installed").udp is None
        True
    """

    name: str
    kind: str  # "driver" or "peer"
    udp: Measurement | None = None
    tcp: Measurement | None = None
    skipped: str | None = None

    def value(self, protocol: str, key: str) -> float | None:
        """A number from one protocol's result (None when missing)."""
        measurement = self.udp if protocol == "udp" else self.tcp
        if measurement is None or measurement.result is None:
            return None
        raw = measurement.result.get(key)
        return float(raw) if isinstance(raw, int | float) else None

    def rtt(self, protocol: str, key: str = "rtt") -> LatencySummary | None:
        """One protocol's round-trip summary (``rtt``, or ``rtt_loaded`` for UDP)."""
        measurement = self.udp if protocol == "udp" else self.tcp
        if measurement is None or measurement.result is None:
            return None
        data = measurement.result.get(key)
        return LatencySummary.from_dict(data) if isinstance(data, dict) else None


@attrs.frozen
class BenchReport:
    """Everything one bench run measured, with what it ran on.

    Example:
        >>> BenchReport(describe_machine(), {}, "stdlib", ()).ratio("x", "udp", "datagrams_per_s")
    """

    machine: MachineDescription
    settings: dict[str, Any]
    baseline: str
    contenders: tuple[Contender, ...]

    def _baseline(self) -> Contender | None:
        return next((c for c in self.contenders if c.name == self.baseline), None)

    def ratio(self, name: str, protocol: str, key: str) -> float | None:
        """``name``'s throughput over the baseline's (higher is better)."""
        base = self._baseline()
        this = next((c for c in self.contenders if c.name == name), None)
        if base is None or this is None:
            return None
        a, b = this.value(protocol, key), base.value(protocol, key)
        return a / b if a is not None and b else None

    def latency_ratio(self, name: str, protocol: str) -> float | None:
        """The baseline's p50 round trip over ``name``'s (higher is better)."""
        base = self._baseline()
        this = next((c for c in self.contenders if c.name == name), None)
        if base is None or this is None:
            return None
        a, b = this.rtt(protocol), base.rtt(protocol)
        return b.p50_us / a.p50_us if a is not None and b is not None and a.p50_us else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document ``--json`` writes."""
        contenders = []
        for c in self.contenders:
            entry: dict[str, Any] = {"name": c.name, "kind": c.kind, "skipped": c.skipped}
            for protocol in _PROTOCOLS:
                m = c.udp if protocol == "udp" else c.tcp
                entry[protocol] = None if m is None else {
                    "result": m.result, "error": m.error, "server": m.server,
                }
            entry["ratios"] = {
                "udp_datagrams_per_s": self.ratio(c.name, "udp", "datagrams_per_s"),
                "udp_rtt_p50": self.latency_ratio(c.name, "udp"),
                "tcp_bytes_per_s": self.ratio(c.name, "tcp", "bytes_per_s"),
                "tcp_rtt_p50": self.latency_ratio(c.name, "tcp"),
            }
            contenders.append(entry)
        return {
            "machine": self.machine.to_dict(),
            "settings": self.settings,
            "baseline": self.baseline,
            "ratios_note": "contender over baseline for throughput, baseline over contender "
            "for round trips: higher is better for every ratio",
            "contenders": contenders,
        }


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _connections(settings: dict[str, Any]) -> str:
    count = settings.get("connections", 1)
    return f", {count} TCP connections" if count != 1 else ""


def render_table(report: BenchReport) -> str:
    """The bench table, its heading (settings, machine) and the notes under it."""
    s = report.settings
    base = report.baseline
    rows = []
    notes: list[str] = []
    fallbacks: set[str] = set()
    for c in report.contenders:
        if c.skipped:
            notes.append(f"{c.name}: skipped ({c.skipped})")
            continue
        udp, tcp = c.rtt("udp"), c.rtt("tcp")
        mbps = c.value("tcp", "bytes_per_s")
        rows.append([
            c.name, c.kind,
            _num(c.value("udp", "datagrams_per_s")),
            _ratio(report.ratio(c.name, "udp", "datagrams_per_s")),
            _num(udp.p50_us if udp else None, 1), _num(udp.p99_us if udp else None, 1),
            _num(udp.p999_us if udp else None, 1),
            _num(mbps / 1e6 if mbps is not None else None, 1),
            _ratio(report.ratio(c.name, "tcp", "bytes_per_s")),
            _num(tcp.p50_us if tcp else None, 1), _num(tcp.p99_us if tcp else None, 1),
            _num(tcp.p999_us if tcp else None, 1),
        ])
        notes.extend(
            f"{c.name} {m.protocol}: {m.error}" for m in (c.udp, c.tcp) if m is not None and m.error
        )
        fallback = c.tcp.result if c.tcp is not None else None
        if fallback and fallback.get("load_generator") == PYTHON_FALLBACK:
            fallbacks.add(str(fallback.get("load_generator_note", "")))
    headers = ["server", "kind", "UDP dgram/s", f"x{base}", "p50 us", "p99 us", "p99.9 us",
               "TCP MB/s", f"x{base}", "p50 us", "p99 us", "p99.9 us"]
    lines = [
        f"horizon bench: loopback echo, {s['duration']}s per measurement, {s['size']}-byte "
        f"messages, UDP window {s['window']}{_connections(s)}; {s['placement']}",
        f"machine: {report.machine.summary()}",
        "",
        format_table(headers, rows),
        "",
        f"x{base}: throughput relative to {base} (higher is better). Round trips (us) have one "
        "message in flight: UDP window 1, TCP ping-pong.",
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
    return f"{m.result['bytes_per_s'] / 1e6:,.1f} MB/s{latency}"


def run(args: argparse.Namespace) -> int:
    """Measure every chosen contender; print the table, write ``--json``/``--plot``."""
    _validate(args)
    contenders = _contenders(args)
    names = [c.name for c in contenders]
    if args.baseline not in names:
        raise CommandError(f"--baseline {args.baseline!r} is not measured; pick one of "
                           f"{', '.join(names)}")
    placement = _placement()
    loadgen_ok, loadgen_reason = load_generator_status()
    warmup = round(min(0.25, args.duration / 4), 3)
    runnable = [c for c in contenders if c.skipped is None]
    total = len(runnable) * len(_PROTOCOLS)
    _progress(
        f"horizon bench: {len(runnable)} servers x {len(_PROTOCOLS)} protocols, "
        f"about {total * (2 * (args.duration + warmup) + 0.6):.0f}s; {placement.describe()}"
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
        for protocol in _PROTOCOLS:
            done += 1
            if protocol == "udp" and not loadgen_ok:
                results[protocol] = Measurement(protocol, None, loadgen_reason)
            else:
                results[protocol] = measure(
                    contender.name, protocol, placement, duration=args.duration,
                    warmup=warmup, size=args.size, window=args.window,
                    connections=args.connections,
                )
            _progress(f"  [{done}/{total}] {contender.name} {protocol}: "
                      f"{_describe(results[protocol])}")
        measured.append(attrs.evolve(contender, udp=results["udp"], tcp=results["tcp"]))
    settings = {
        "duration": args.duration, "warmup": warmup, "size": args.size, "window": args.window,
        "connections": args.connections,
        "load_generator": "native" if loadgen_ok else PYTHON_FALLBACK,
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


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
