"""The processes ``horizon bench`` starts: one echo server, one load generator.

Run as ``python -m horizon_drivers.bench.child serve|load ...``; each pins itself to the CPU
it is given, does its one job and talks to the parent in JSON lines on stdout:

* ``serve CONTENDER udp|tcp`` prints ``{"ready": "127.0.0.1:PORT"}`` once bound, serves until
  SIGTERM, and for a Horizon driver prints ``{"totals": {...}}`` (the server's own counts) on
  the way out. ``--buffer BYTES`` sets every server's SO_RCVBUF/SO_SNDBUF; for Horizon drivers
  ``--spin-budget US`` and ``--no-gso`` set ``NetConfig.spin_budget`` and ``udp_gso_batch``;
  ``--backend`` picks the anyio backend (``asyncio``, ``uvloop``, ``trio``) of the ``aio``
  driver and the ``anyio`` peer, and ``--per-datagram`` makes the ``aio`` driver echo through
  anyio's ``receive()``/``send()`` instead of its batches; ``--config FILE.toml`` starts a Horizon
  driver's NetConfig from that file (as ``horizon echo --config`` reads it; ``horizon soak``
  passes its own), the options above applied on top only when given;
* ``load udp|tcp TARGET`` prints ``{"result": {...}}`` from the native C load generator. UDP
  ``--mode both`` (the default) is a windowed throughput run, then a window-1 round-trip run;
  ``--mode throughput`` only the first (the generator busy-waits for replies), ``--mode rtt``
  only the second. With ``--server-pid`` the windowed run's result also carries
  ``server_cpu_windowed_s``, that process's CPU time over the run. TCP is a streaming
  throughput run, a ping-pong round-trip run, then (native generator only) a pipelined run:
  ``--pipeline`` messages of ``--size`` bytes in flight on one connection, messages per second
  and each message's round trip; TCP ``--mode rtt`` leaves out the throughput run. Round
  trips carry the whole CDF (``CDF_PROBABILITIES``).
  Where the native generator is unavailable, TCP falls back to the Python client in
  :mod:`~horizon_drivers.bench.tcp_client` (the result's ``load_generator`` says which ran);
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

import attrs

from horizon_core.addresses import SocketAddress
from horizon_core.config import NetConfig
from horizon_drivers.bench.latency import CDF_PROBABILITIES, LatencySummary, summarize_rtts
from horizon_drivers.bench.peers import BACKENDS, PEER_NAMES, serve_peer
from horizon_drivers.bench.process_cpu import cpu_seconds
from horizon_drivers.bench.reference import REFERENCE, serve_reference
from horizon_drivers.bench.tcp_client import TCP_CHUNK, measure_tcp_rtts, measure_tcp_throughput
from horizon_drivers.cli.echo_service import Bound, StopFlag, serve_echo, stop_on_signals
from horizon_drivers.cli.endpoints import load_config
from horizon_drivers.cli.failures import EXIT_FAILURE, explain
from horizon_drivers.tuning import pin_to_cpu

__all__ = ["PYTHON_FALLBACK", "load_generator_status", "main"]

#: The ``load_generator`` a TCP result names when the Python client measured it.
PYTHON_FALLBACK = "python"
# Bounds a TCP connect, each wait for an echo and the final drain in the native generator; two of
# them fit in runner.LOAD_GRACE with the runs' durations.
_TCP_TIMEOUT = 4.0


def load_generator_status() -> tuple[bool, str]:
    """Whether the native load generator imports here, and why not.

    Example:
        >>> ok, reason = load_generator_status()
        >>> ok or reason != ""
        True
    """
    try:
        from horizon_drivers.bench import loadgen  # noqa: F401
    except ImportError as exc:
        return False, f"the native load generator is unavailable ({exc})"
    return True, ""


def _emit(**message: Any) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _serve(args: argparse.Namespace) -> None:
    address = SocketAddress.parse(args.address)

    def ready(where: SocketAddress) -> None:
        _emit(ready=str(where))

    if args.config is not None:
        config = load_config(args.config)
        if args.spin_budget is not None:
            config = attrs.evolve(config, spin_budget=args.spin_budget)
        if args.no_gso:
            config = attrs.evolve(config, udp_gso_batch=False)
    else:
        config = NetConfig(spin_budget=args.spin_budget, udp_gso_batch=not args.no_gso)
    if args.buffer is not None:
        config = attrs.evolve(config, recv_buf=args.buffer, send_buf=args.buffer)
    if args.contender == REFERENCE:
        # The C loop returns on SIGTERM (the stop pipe is the wakeup fd) and reports its counts.
        _emit(totals=serve_reference(args.protocol, address, ready, config=config,
                                     spin_us=args.spin_budget or 0))
        return
    if args.contender in PEER_NAMES:
        # Peers serve until the parent's SIGTERM ends the process (its default action).
        serve_peer(args.contender, args.protocol, address, ready, backend=args.backend,
                   buffer=args.buffer)
        return
    stop = StopFlag()
    udp = address if args.protocol == "udp" else None
    tcp = address if args.protocol == "tcp" else None

    def ready_bound(bound: Bound) -> None:
        where = bound.udp or bound.tcp
        assert where is not None
        ready(where)

    with stop_on_signals(stop):
        totals = serve_echo(args.contender, udp, tcp, config, stop, ready_bound,
                            backend=args.backend, per_datagram=args.per_datagram)
    _emit(totals=totals.to_dict())


def _summary(rtt: LatencySummary | None) -> dict[str, object] | None:
    return rtt.to_dict() if rtt is not None else None


def _load(args: argparse.Namespace) -> None:
    target = SocketAddress.parse(args.target)
    if args.protocol == "udp":
        _emit(result=_udp(target, args))
        return
    native, reason = load_generator_status()
    _emit(result=_native_tcp(target, args) if native else _python_tcp(target, args, reason))


def _udp(target: SocketAddress, args: argparse.Namespace) -> dict[str, object]:
    from horizon_drivers.bench.loadgen import run_udp_load

    common = {"payload_size": args.size, "warmup": args.warmup, "duration": args.duration,
              "sample_rtt": True, "quantiles": CDF_PROBABILITIES}
    result: dict[str, object] = {"load_generator": "native"}
    if args.mode != "rtt":
        # The server's CPU time over this run alone: every server faces the same offered load
        # here (the window), unlike the window-1 run, where a faster server answers more.
        cpu_before = cpu_seconds(args.server_pid) if args.server_pid else None
        rate = run_udp_load(target, window=args.window, busy_wait=args.mode == "throughput",
                            **common)
        cpu_after = cpu_seconds(args.server_pid) if args.server_pid else None
        if cpu_before is not None and cpu_after is not None:
            result["server_cpu_windowed_s"] = cpu_after - cpu_before
        result.update({
            "datagrams_per_s": rate["rate"],
            "rate": rate["rate"],
            "sent": rate["sent"],
            "received": rate["received"],
            "total_received": rate["total_received"],
            "lost": rate["lost"],
            "seconds": rate["seconds"],
            "gso": rate["gso"],
            "rtt_loaded": _summary(LatencySummary.from_load_generator(rate["rtt_ns"])),
        })
    if args.mode != "throughput":
        # One datagram in flight, the client spinning: the round trip without queueing.
        single = run_udp_load(target, window=1, busy_wait=True, **common)
        result["rtt"] = _summary(LatencySummary.from_load_generator(single["rtt_ns"]))
        if args.mode == "rtt":
            result.update({
                "rate": single["rate"],
                "received": single["received"],
                "total_received": single["total_received"],
                "lost": single["lost"],
                "seconds": single["seconds"],
            })
    return result


def _native_tcp(target: SocketAddress, args: argparse.Namespace) -> dict[str, object]:
    from horizon_drivers.bench.loadgen import run_tcp_pipelined, run_tcp_rtt, run_tcp_throughput

    bulk: dict[str, Any] = {}
    if args.mode != "rtt":
        bulk = run_tcp_throughput(target, duration=args.duration, warmup=args.warmup,
                                  connections=args.connections, size=TCP_CHUNK,
                                  timeout=_TCP_TIMEOUT)
    # One message in flight, the client spinning, as for UDP's window-1 round trips.
    ping = run_tcp_rtt(target, duration=args.duration, warmup=args.warmup, size=args.size,
                       busy_wait=True, timeout=_TCP_TIMEOUT, quantiles=CDF_PROBABILITIES)
    # Many small messages in flight on one connection: the server's per-message cost.
    pipelined = run_tcp_pipelined(target, duration=args.duration, warmup=args.warmup,
                                  size=args.size, pipeline=args.pipeline, timeout=_TCP_TIMEOUT,
                                  quantiles=CDF_PROBABILITIES)
    bulk_keys = ("bytes_per_s", "bytes", "seconds", "connections", "drained")
    streaming: dict[str, object] = {key: bulk[key] for key in bulk_keys if key in bulk}
    return {
        **streaming,
        "round_trips_per_s": ping["rate"],
        "rtt": _summary(LatencySummary.from_load_generator(ping["rtt_ns"])),
        "messages_per_s": pipelined["rate"],
        "messages": pipelined["messages"],
        "pipeline": pipelined["pipeline"],
        "rtt_pipelined": _summary(LatencySummary.from_load_generator(pipelined["rtt_ns"])),
        "load_generator": "native",
    }


def _python_tcp(target: SocketAddress, args: argparse.Namespace, reason: str) -> dict[str, object]:
    # The fallback: one connection, no warm-up; slower than the native generator.
    throughput = measure_tcp_throughput(target, args.duration)
    rtts = measure_tcp_rtts(target, args.duration, args.size)
    return {
        "bytes_per_s": throughput.bytes_per_s,
        "bytes": throughput.bytes_echoed,
        "seconds": throughput.seconds,
        "connections": 1,
        "rtt": _summary(summarize_rtts(rtts)),
        "load_generator": PYTHON_FALLBACK,
        "load_generator_note": f"TCP measured by the Python client: {reason}",
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="horizon_drivers.bench.child")
    parser.add_argument("--cpu", type=int, default=None)
    jobs = parser.add_subparsers(dest="job", required=True)
    serve = jobs.add_parser("serve")
    serve.add_argument("contender")
    serve.add_argument("protocol", choices=("udp", "tcp"))
    serve.add_argument("--address", default="127.0.0.1:0")
    serve.add_argument("--buffer", type=int, default=None)
    serve.add_argument("--spin-budget", type=int, default=None)
    serve.add_argument("--no-gso", action="store_true")
    serve.add_argument("--backend", choices=BACKENDS, default="asyncio")
    serve.add_argument("--per-datagram", action="store_true")
    serve.add_argument("--config", default=None)
    load = jobs.add_parser("load")
    load.add_argument("protocol", choices=("udp", "tcp"))
    load.add_argument("target")
    load.add_argument("--duration", type=float, required=True)
    load.add_argument("--warmup", type=float, default=0.2)
    load.add_argument("--size", type=int, required=True)
    load.add_argument("--window", type=int, required=True)
    load.add_argument("--connections", type=int, default=1)
    load.add_argument("--pipeline", type=int, default=256)
    load.add_argument("--mode", choices=("both", "throughput", "rtt"), default="both")
    load.add_argument("--server-pid", type=int, default=None)
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
