"""UDP echo: the native driver's batch server against a stdlib loop and uvloop, in one run.

Throughput mode (64-byte datagrams, ``--window`` 256 outstanding). Servers, each in its own
process pinned to ``--server-cpu``:

* ``native``  — ``horizon_drivers.native``: ``recv_batch``/``send_batch`` (one recvmmsg and one
  sendmmsg per batch, straight into a BufferPool), waiting in the epoll Runtime when idle; the
  replies to one client go out as UDP GSO messages (``NetConfig.udp_gso_batch``, the default);
* ``native-plain`` — the same server with ``udp_gso_batch=False``: one message per datagram;
* ``stdlib``  — a blocking ``socket.recvfrom``/``sendto`` loop;
* ``uvloop``  — a uvloop ``DatagramProtocol`` that ``sendto``s each datagram back.

RTT mode (window 1): the native server with a spin budget (``NetConfig.spin_budget``: busy-poll
epoll before blocking) against the same server blocking in epoll; the client spins too
(``busy_wait``), so its own wake-up does not blur the comparison. Median and tail round trips.

Every server socket gets the same receive/send buffers (``--buffer``). The load generator is the
native C one (``horizon_drivers.bench.loadgen``: recvmmsg/sendmmsg, GIL released for the
whole run), in this process, pinned to ``--client-cpu``. It busy-waits for replies (no sleep and
wake-up per batch), refills its window in bursts and sends each burst as UDP GSO messages, so
its cost per datagram is well below any server's and the server, not the generator, is the
limit. With ``--client-sleep`` it sleeps in poll() instead and, on a 2-core VM, becomes the
bottleneck itself.
Rounds are interleaved so machine noise hits every server alike; tables show the median and best
round and the server's CPU use (replies per server CPU-second is steadier than replies per second
on a shared machine).

Run (from the project root, after ``pip install -e .``)::

    python benchmarks/udp_echo.py                       # 3 rounds, both modes
    python benchmarks/udp_echo.py --rounds 5 --duration 3 --json udp_echo.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
THROUGHPUT_SERVERS = ("native", "native-plain", "stdlib", "uvloop")
RTT_SERVERS = ("native-spin", "native-blocking")


# -- servers (each runs in a child process) -------------------------------------------------------


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_CPU_AT_START = [0.0]


def _announce(port: int) -> None:
    _CPU_AT_START[0] = _cpu_seconds()  # serving starts now: start-up CPU is not counted
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()


def _report_on_sigterm(extra: Callable[[], dict[str, Any]] = dict) -> None:
    def handler(_signum: int, _frame: object) -> None:
        stats = {"cpu_seconds": _cpu_seconds() - _CPU_AT_START[0], **extra()}
        sys.stdout.write("STATS " + json.dumps(stats) + "\n")
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, handler)


def serve_native(buffer: int, spin_budget: int | None, gso: bool = True) -> None:
    from horizon_core.buffers import BufferPool
    from horizon_core.config import NetConfig
    from horizon_core.events import Interest
    from horizon_drivers import native

    config = NetConfig(
        recv_buf=buffer, send_buf=buffer, spin_budget=spin_budget, udp_gso_batch=gso
    )
    sock = native.bind_udp("127.0.0.1:0", config)
    rt = native.runtime(config)
    rt.register(sock, Interest.READABLE)
    batch = BufferPool(native.MAX_BATCH, 2048).batch(native.MAX_BATCH)
    _report_on_sigterm(lambda: sock.stats.to_dict())
    _announce(sock.local_address.port)
    recv_batch, send_batch, release, poll = sock.recv_batch, sock.send_batch, batch.release, rt.poll_once
    capacity = batch.capacity
    drained = True
    while True:
        # A batch that came back short means recvmmsg emptied the queue: wait (spin, then block)
        # in the runtime instead of paying for a recvmmsg that would only say EAGAIN.
        if drained:
            poll(None)
        try:
            n = recv_batch(batch)
        except BlockingIOError:
            drained = True
            continue
        drained = n < capacity
        sent = 0
        while sent < n:
            try:
                sent += send_batch(batch, sent)
            except BlockingIOError:
                break  # the peer's queue is full: drop the rest, as any UDP server would
        release()


def _stdlib_socket(buffer: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
    sock.bind(("127.0.0.1", 0))
    return sock


def serve_stdlib(buffer: int) -> None:
    sock = _stdlib_socket(buffer)
    _report_on_sigterm()
    _announce(sock.getsockname()[1])
    recvfrom, sendto = sock.recvfrom, sock.sendto
    while True:
        data, address = recvfrom(2048)
        sendto(data, address)


def serve_uvloop(buffer: int) -> None:
    import asyncio

    import uvloop

    class Echo(asyncio.DatagramProtocol):
        transport: Any  # uvloop's UDPTransport is not an asyncio.DatagramTransport subclass

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
            self.transport.sendto(data, addr)

    async def main() -> None:
        sock = _stdlib_socket(buffer)
        sock.setblocking(False)
        port = sock.getsockname()[1]  # uvloop takes the socket over
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(Echo, sock=sock)
        _report_on_sigterm()
        _announce(port)
        await asyncio.Event().wait()

    uvloop.run(main())


def _serve(kind: str, buffer: int, spin: int) -> None:
    if kind in ("native", "native-blocking"):
        serve_native(buffer, None)
    elif kind == "native-plain":
        serve_native(buffer, None, gso=False)
    elif kind == "native-spin":
        serve_native(buffer, spin)
    elif kind == "stdlib":
        serve_stdlib(buffer)
    elif kind == "uvloop":
        serve_uvloop(buffer)
    else:
        raise SystemExit(f"unknown server {kind!r}")


# -- the driver side --------------------------------------------------------------------------------


class Server:
    """A server child process pinned to one CPU; ``stop()`` returns its counters."""

    def __init__(self, kind: str, args: argparse.Namespace) -> None:
        command = [
            sys.executable, __file__, "--serve", kind, "--buffer", str(args.buffer),
            "--spin", str(args.spin), "--server-cpu", str(args.server_cpu),
        ]
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.process.kill()
            raise RuntimeError(f"server {kind} did not start: {line!r}")
        self.port = int(line.split()[1])

    def stop(self) -> dict[str, Any]:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=30)
        for line in out.splitlines():
            if line.startswith("STATS "):
                stats: dict[str, Any] = json.loads(line[6:])
                return stats
        return {}


def _round(kind: str, args: argparse.Namespace, *, rtt: bool) -> dict[str, Any]:
    from horizon_drivers.bench.loadgen import run_udp_load

    server = Server(kind, args)
    client_cpu = _cpu_seconds()
    try:
        result = run_udp_load(
            f"127.0.0.1:{server.port}",
            duration=args.rtt_duration if rtt else args.duration,
            warmup=args.warmup,
            window=1 if rtt else args.window,
            payload_size=args.size,
            sample_rtt=rtt,
            busy_wait=rtt or not args.client_sleep,
        )
    finally:
        stats = server.stop()
    result["client_cpu_seconds"] = _cpu_seconds() - client_cpu
    result["server_cpu_seconds"] = stats.pop("cpu_seconds", None)
    result["server_stats"] = stats
    result["server"] = kind
    return result


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _summarize_throughput(rounds: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for kind, results in rounds.items():
        rates = [r["rate"] for r in results]
        per_cpu = [
            r["total_received"] / r["server_cpu_seconds"]
            for r in results
            if r.get("server_cpu_seconds")
        ]
        rows.append({
            "server": kind,
            "median_rate": _median(rates),
            "best_rate": max(rates),
            "per_server_cpu_second": _median(per_cpu),
            "rates": rates,
            "lost": sum(r["lost"] for r in results),
            "timeouts": sum(r["timeouts"] for r in results),
        })
    base = {row["server"]: row["median_rate"] for row in rows}
    for row in rows:
        for other in ("stdlib", "uvloop"):
            if base.get(other):
                row[f"vs_{other}"] = row["median_rate"] / base[other]
    return rows


def _summarize_rtt(rounds: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for kind, results in rounds.items():
        p50 = [r["rtt_ns"]["p50"] for r in results if r["rtt_ns"].get("samples")]
        rows.append({
            "server": kind,
            "median_p50_us": _median(p50) / 1000,
            "p50_us": [v / 1000 for v in p50],
            "p90_us": _median([r["rtt_ns"]["p90"] for r in results if "p90" in r["rtt_ns"]]) / 1000,
            "p99_us": _median([r["rtt_ns"]["p99"] for r in results if "p99" in r["rtt_ns"]]) / 1000,
            "samples": sum(r["rtt_ns"].get("samples", 0) for r in results),
        })
    return rows


def _print_throughput(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\nUDP echo throughput: {args.size}-byte datagrams, window {args.window}, "
        f"{args.rounds} rounds of {args.duration}s (server CPU {args.server_cpu}, "
        f"load generator CPU {args.client_cpu})"
    )
    print(
        f"{'server':<12} {'median/s':>12} {'best/s':>12} {'vs stdlib':>10} {'vs uvloop':>10}"
        f" {'per CPU-s':>12} {'lost':>8}"
    )
    for row in rows:
        print(
            f"{row['server']:<12} {row['median_rate']:>12,.0f} {row['best_rate']:>12,.0f} "
            f"{row.get('vs_stdlib', 0):>9.2f}x {row.get('vs_uvloop', 0):>9.2f}x "
            f"{row['per_server_cpu_second']:>12,.0f} {row['lost']:>8}"
        )
    print("(per CPU-s: replies per second of server CPU time, steadier on a shared machine)")


def _print_rtt(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\nUDP round trip, window 1, {args.rounds} rounds of {args.rtt_duration}s "
        f"(spin budget {args.spin} us; the client busy-waits)"
    )
    print(f"{'server':<16} {'p50 us':>8} {'p90 us':>8} {'p99 us':>8} {'samples':>10}")
    for row in rows:
        print(
            f"{row['server']:<16} {row['median_p50_us']:>8.1f} {row['p90_us']:>8.1f} "
            f"{row['p99_us']:>8.1f} {row['samples']:>10}"
        )
    p50 = {row["server"]: row["median_p50_us"] for row in rows}
    if p50.get("native-spin") and p50.get("native-blocking"):
        cut = 1 - p50["native-spin"] / p50["native-blocking"]
        print(f"spin budget cuts the median round trip by {cut:.0%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per throughput round")
    parser.add_argument("--rtt-duration", type=float, default=1.0, help="seconds per RTT round")
    parser.add_argument("--warmup", type=float, default=0.3, help="seconds before measuring")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per server")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--buffer", type=int, default=4 * 1024 * 1024, help="SO_RCVBUF/SO_SNDBUF")
    parser.add_argument("--spin", type=int, default=50, help="spin budget (us) for native-spin")
    parser.add_argument(
        "--client-sleep", action="store_true",
        help="the load generator sleeps in poll() when idle instead of busy-waiting",
    )
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--servers", default=",".join(THROUGHPUT_SERVERS))
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-rtt", action="store_true")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    if args.serve:
        os.sched_setaffinity(0, {args.server_cpu})
        _serve(args.serve, args.buffer, args.spin)
        return 0

    os.sched_setaffinity(0, {args.client_cpu})
    output: dict[str, Any] = {
        "host": {
            "python": platform.python_version(),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "server_cpu": args.server_cpu,
            "client_cpu": args.client_cpu,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("serve", "json")},
    }
    if not args.skip_throughput:
        kinds = [k for k in args.servers.split(",") if k]
        rounds: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for _ in range(args.rounds):
            for kind in kinds:
                rounds[kind].append(_round(kind, args, rtt=False))
        rows = _summarize_throughput(rounds)
        _print_throughput(rows, args)
        output["throughput"] = {"summary": rows, "rounds": rounds}
    if not args.skip_rtt:
        rtt_rounds: dict[str, list[dict[str, Any]]] = {k: [] for k in RTT_SERVERS}
        for _ in range(args.rounds):
            for kind in RTT_SERVERS:
                rtt_rounds[kind].append(_round(kind, args, rtt=True))
        rtt_rows = _summarize_rtt(rtt_rounds)
        _print_rtt(rtt_rows, args)
        output["rtt"] = {"summary": rtt_rows, "rounds": rtt_rounds}
    if args.json:
        args.json.write_text(json.dumps(output, indent=2, default=str))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
