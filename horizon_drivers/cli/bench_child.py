"""The processes ``horizon bench`` starts: one echo server, one load generator.

Run as ``python -m horizon_drivers.cli.bench_child serve|load ...``; each pins itself to the CPU
it is given, does its one job and talks to the parent in JSON lines on stdout:

* ``serve`` prints ``{"ready": "127.0.0.1:PORT"}`` once bound, serves until SIGTERM, and for a
  Horizon driver prints ``{"totals": {...}}`` (the server's own counts) on the way out;
* ``load`` prints ``{"result": {...}}``: UDP from the native C load generator (a windowed
  throughput run, then a window-1 round-trip run), TCP from :mod:`~horizon_drivers.cli.tcp_load`;
* either prints ``{"error": "one line"}`` and exits 2 when it cannot do its job.

Keeping server and load generator in separate processes, pinned to different CPUs, is what
makes the numbers the server's: neither steals the other's CPU or GIL.

Example:
    >>> load_generator_status()[0] in (True, False)
    True
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from horizon_core.addresses import SocketAddress
from horizon_core.config import NetConfig
from horizon_drivers.cli.echo_service import Bound, StopFlag, serve_echo, stop_on_signals
from horizon_drivers.cli.failures import EXIT_FAILURE, explain
from horizon_drivers.cli.latency import LatencySummary, summarize_rtts
from horizon_drivers.cli.peers import PEER_NAMES, serve_peer
from horizon_drivers.cli.tcp_load import measure_tcp_rtts, measure_tcp_throughput
from horizon_drivers.tuning import pin_to_cpu

__all__ = ["load_generator_status", "main"]


def load_generator_status() -> tuple[bool, str]:
    """Whether the native UDP load generator imports here, and why not.

    Example:
        >>> ok, reason = load_generator_status()
        >>> ok or reason != ""
        True
    """
    try:
        from horizon_drivers.native import _linux_loadgen  # noqa: F401
    except ImportError as exc:
        return False, f"the native UDP load generator is unavailable ({exc})"
    return True, ""


def _emit(**message: Any) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _serve(args: argparse.Namespace) -> None:
    address = SocketAddress.parse(args.address)

    def ready(where: SocketAddress) -> None:
        _emit(ready=str(where))

    if args.contender in PEER_NAMES:
        # Peers serve until the parent's SIGTERM ends the process (its default action).
        serve_peer(args.contender, args.protocol, address, ready)
        return
    stop = StopFlag()
    udp = address if args.protocol == "udp" else None
    tcp = address if args.protocol == "tcp" else None

    def ready_bound(bound: Bound) -> None:
        where = bound.udp or bound.tcp
        assert where is not None
        ready(where)

    with stop_on_signals(stop):
        totals = serve_echo(args.contender, udp, tcp, NetConfig(), stop, ready_bound)
    _emit(totals=totals.to_dict())


def _summary(rtt: LatencySummary | None) -> dict[str, object] | None:
    return rtt.to_dict() if rtt is not None else None


def _load(args: argparse.Namespace) -> None:
    target = SocketAddress.parse(args.target)
    if args.protocol == "udp":
        from horizon_drivers.native._linux_loadgen import run_udp_load

        common = {"payload_size": args.size, "warmup": args.warmup, "sample_rtt": True}
        rate = run_udp_load(target, duration=args.duration, window=args.window, **common)
        # One datagram in flight, the client spinning: the round trip without queueing.
        single = run_udp_load(target, duration=args.duration, window=1, busy_wait=True, **common)
        _emit(result={
            "datagrams_per_s": rate["rate"],
            "sent": rate["sent"],
            "received": rate["received"],
            "lost": rate["lost"],
            "seconds": rate["seconds"],
            "rtt_loaded": _summary(LatencySummary.from_load_generator(rate.get("rtt_ns", {}))),
            "rtt": _summary(LatencySummary.from_load_generator(single.get("rtt_ns", {}))),
        })
        return
    throughput = measure_tcp_throughput(target, args.duration)
    rtts = measure_tcp_rtts(target, args.duration, args.size)
    _emit(result={
        "bytes_per_s": throughput.bytes_per_s,
        "bytes": throughput.bytes_echoed,
        "seconds": throughput.seconds,
        "rtt": _summary(summarize_rtts(rtts)),
    })


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="horizon_drivers.cli.bench_child")
    parser.add_argument("--cpu", type=int, default=None)
    jobs = parser.add_subparsers(dest="job", required=True)
    serve = jobs.add_parser("serve")
    serve.add_argument("contender")
    serve.add_argument("protocol", choices=("udp", "tcp"))
    serve.add_argument("--address", default="127.0.0.1:0")
    load = jobs.add_parser("load")
    load.add_argument("protocol", choices=("udp", "tcp"))
    load.add_argument("target")
    load.add_argument("--duration", type=float, required=True)
    load.add_argument("--warmup", type=float, default=0.2)
    load.add_argument("--size", type=int, required=True)
    load.add_argument("--window", type=int, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one bench child job; exit status 0, or 2 after printing ``{"error": ...}``."""
    args = _parser().parse_args(argv)
    try:
        if args.cpu is not None:
            pin_to_cpu(args.cpu)
        (_serve if args.job == "serve" else _load)(args)
    except Exception as exc:
        _emit(error=explain(exc) or f"{type(exc).__name__}: {exc}")
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
