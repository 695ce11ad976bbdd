"""UDP echo throughput: the anyio driver's batches against plain anyio and uvloop, in one run.

Servers (each in its own process, pinned to ``--server-cpu``):

* ``horizon-batch``   — ``horizon_drivers.aio.create_udp_socket`` + ``receive_batch``/``send_batch``
  (native recvmmsg/sendmmsg on Linux), on the chosen anyio backend;
* ``horizon-single``  — the same socket through anyio's own ``receive()``/``send()`` (drop-in path);
* ``anyio-plain``     — ``anyio.create_udp_socket`` with ``receive()``/``send()``, same backend;
* ``uvloop-protocol`` — a uvloop ``DatagramProtocol`` that ``sendto``s each datagram back.

Every server socket gets the same 4 MiB SO_RCVBUF/SO_SNDBUF (anyio's after bind, through
``raw_socket``: it has no way to set them before). The load generator (in this process, pinned to
``--client-cpu``) is the native C one (``horizon_drivers.bench.loadgen``: recvmmsg/sendmmsg,
GIL released, ``--window`` datagrams outstanding, lost replies re-sent after 50 ms); without it a
plain stdlib generator is used and the output says so (it saturates far below the servers).
Rounds are interleaved so machine noise hits every server alike; the table shows the median and
best round, loss, and the server's CPU use (replies per server CPU-second is steadier than
replies per second on a shared machine).

Run::

    PYTHONPATH=. python benchmarks/aio_udp_echo.py                      # all backends, 3 rounds
    PYTHONPATH=. python benchmarks/aio_udp_echo.py --backends trio --duration 3 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BUFFER = 4 * 1024 * 1024
BACKENDS = ("asyncio", "uvloop", "trio")
HORIZON_KINDS = ("horizon-batch", "horizon-single", "anyio-plain")


# -- servers (run in a child process) -------------------------------------------------------------


def _announce(port: int) -> None:
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()


def _stop_on_sigterm(report: Callable[[], dict[str, Any]]) -> None:
    def handler(_signum: int, _frame: object) -> None:
        sys.stdout.write("STATS " + json.dumps(report()) + "\n")
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, handler)


def _anyio_run(main: Callable[[], Any], backend: str) -> None:
    import anyio

    if backend == "uvloop":
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(main, backend=backend)


def serve_horizon_batch(backend: str, batch_size: int, engine: str) -> None:
    from horizon_core.buffers import BufferPool
    from horizon_core.config import NetConfig
    from horizon_drivers.aio import create_udp_socket

    async def main() -> None:
        config = NetConfig(recv_buf=BUFFER, send_buf=BUFFER)
        udp = await create_udp_socket(config, local_host="127.0.0.1", batch_engine=engine)  # type: ignore[arg-type]
        _stop_on_sigterm(lambda: {"engine": udp.batch_engine, **udp.stats.to_dict()})
        _announce(udp.local_address.port)
        batch = BufferPool(batch_size, 2048).batch(batch_size)
        receive_batch, send_batch, release = udp.receive_batch, udp.send_batch, batch.release
        while True:
            n = await receive_batch(batch)
            sent = 0
            while sent < n:
                sent += await send_batch(batch, sent)
            release()

    _anyio_run(main, backend)


def serve_horizon_single(backend: str) -> None:
    from horizon_core.config import NetConfig
    from horizon_drivers.aio import create_udp_socket

    async def main() -> None:
        config = NetConfig(recv_buf=BUFFER, send_buf=BUFFER)
        udp = await create_udp_socket(config, local_host="127.0.0.1")
        _stop_on_sigterm(lambda: udp.stats.to_dict())
        _announce(udp.local_address.port)
        async for packet in udp:
            await udp.send(packet)

    _anyio_run(main, backend)


def serve_anyio_plain(backend: str) -> None:
    import anyio
    from anyio.abc import SocketAttribute

    async def main() -> None:
        udp = await anyio.create_udp_socket(local_host="127.0.0.1")
        raw = udp.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
        count = [0]
        _stop_on_sigterm(lambda: {"datagrams_received": count[0]})
        _announce(udp.extra(SocketAttribute.local_port))
        async for packet in udp:
            count[0] += 1
            await udp.send(packet)

    _anyio_run(main, backend)


def serve_uvloop_protocol() -> None:
    import uvloop

    class Echo(asyncio.DatagramProtocol):
        count = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

        def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
            self.count += 1
            self.transport.sendto(data, addr)

    async def main() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        _transport, protocol = await loop.create_datagram_endpoint(Echo, sock=sock)
        _stop_on_sigterm(lambda: {"datagrams_received": protocol.count})
        _announce(sock.getsockname()[1])
        await asyncio.Event().wait()

    uvloop.run(main())


def run_server(kind: str, backend: str, cpu: int, batch_size: int, engine: str) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    if kind == "horizon-batch":
        serve_horizon_batch(backend, batch_size, engine)
    elif kind == "horizon-single":
        serve_horizon_single(backend)
    elif kind == "anyio-plain":
        serve_anyio_plain(backend)
    elif kind == "uvloop-protocol":
        serve_uvloop_protocol()
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


# -- load generators ----------------------------------------------------------------------------


def native_loadgen() -> Callable[..., dict[str, Any]] | None:
    try:
        from horizon_drivers.bench.loadgen import run_udp_load
    except ImportError:
        return None
    return run_udp_load


def stdlib_load(
    target: str, *, duration: float, window: int, payload_size: int, warmup: float, **unused: Any
) -> dict[str, Any]:
    """A plain sendto/recv generator with ``window`` outstanding (no recvmmsg/sendmmsg)."""
    host, _, port = target.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
    sock.connect((host, int(port)))
    sock.settimeout(0.05)
    payload = b"\0" * payload_size
    for _ in range(window):
        sock.send(payload)
    received = lost = 0
    start = time.perf_counter()
    measure_from = start + warmup
    measured = 0
    end = measure_from + duration
    while (now := time.perf_counter()) < end:
        try:
            sock.recv(2048)
        except TimeoutError:
            lost += window
            for _ in range(window):
                sock.send(payload)
            continue
        received += 1
        if now >= measure_from:
            measured += 1
        sock.send(payload)
    sock.close()
    return {"rate": measured / duration, "received": measured, "lost": lost, "seconds": duration}


# -- the driver process -------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def measure(
    kind: str, backend: str, args: argparse.Namespace, load: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--serve",
        kind,
        "--backend-of-server",
        backend,
        "--server-cpu",
        str(args.server_cpu),
        "--batch",
        str(args.batch),
        "--engine",
        args.engine,
    ]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"{kind}/{backend} server did not start: {line!r}")
        port = int(line.split()[1])
        cpu_before = _cpu_seconds(server.pid)
        started = time.perf_counter()
        result = load(
            f"127.0.0.1:{port}",
            duration=args.duration,
            window=args.window,
            payload_size=args.payload,
            warmup=args.warmup,
        )
        wall = time.perf_counter() - started
        cpu = _cpu_seconds(server.pid) - cpu_before
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    stats = {}
    for line in out.splitlines():
        if line.startswith("STATS "):
            stats = json.loads(line[6:])
    result.update(server_cpu=cpu / wall if wall > 0 else float("nan"), server=stats)
    rate = result["rate"]
    result["per_cpu_second"] = rate / result["server_cpu"] if result["server_cpu"] > 0 else 0.0
    return result


def _mean_batch(stats: dict[str, Any]) -> str:
    calls = stats.get("recv_calls")
    received = stats.get("datagrams_received")
    if not calls or received is None:
        return "-"
    return f"{received / calls:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="asyncio,uvloop,trio")
    parser.add_argument("--kinds", default=",".join(HORIZON_KINDS), help="servers run per backend")
    parser.add_argument("--no-uvloop-protocol", action="store_true")
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--window", type=int, default=128, help="datagrams outstanding")
    parser.add_argument("--payload", type=int, default=64, help="bytes per datagram")
    parser.add_argument("--batch", type=int, default=64, help="horizon-batch batch capacity")
    parser.add_argument("--engine", default="auto", choices=("auto", "native", "portable"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--stdlib-loadgen", action="store_true", help="force the stdlib generator")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--backend-of-server", default="asyncio", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        run_server(args.serve, args.backend_of_server, args.server_cpu, args.batch, args.engine)
        return

    load = None if args.stdlib_loadgen else native_loadgen()
    loadgen_name = "native C (recvmmsg/sendmmsg, GIL released)"
    if load is None:
        load = stdlib_load
        loadgen_name = "stdlib sendto/recv (no recvmmsg/sendmmsg; saturates early)"
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.client_cpu})

    runs: list[tuple[str, str]] = [
        (kind, backend) for backend in args.backends.split(",") for kind in args.kinds.split(",")
    ]
    if not args.no_uvloop_protocol:
        runs.append(("uvloop-protocol", "uvloop"))
    print(
        f"UDP echo, {args.payload}-byte datagrams, window {args.window}, {args.duration}s x "
        f"{args.rounds} rounds (interleaved); server on CPU {args.server_cpu}, load generator on "
        f"CPU {args.client_cpu}: {loadgen_name}. Load average now: {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results: dict[tuple[str, str], list[dict[str, Any]]] = {run: [] for run in runs}
    for round_number in range(args.rounds):
        for run in runs:
            result = measure(run[0], run[1], args, load)
            results[run].append(result)
            print(
                f"  round {round_number + 1}: {run[0]:16} {run[1]:8} {result['rate']:>10,.0f}/s"
                f"  lost {result['lost']:>6}  server CPU {result['server_cpu']:.2f}",
                flush=True,
            )

    print()
    header = (
        f"{'server':16} {'backend':8} {'median/s':>10} {'best/s':>10} {'per CPU-s':>10} "
        f"{'lost':>7} {'batch':>6}"
    )
    print(header)
    print("-" * len(header))
    medians: dict[tuple[str, str], float] = {}
    for run, rounds in results.items():
        rates = [r["rate"] for r in rounds]
        medians[run] = statistics.median(rates)
        per_cpu = statistics.median(r["per_cpu_second"] for r in rounds)
        lost = sum(r["lost"] for r in rounds)
        batch = _mean_batch(rounds[-1]["server"]) if run[0] != "anyio-plain" else "1"
        if run[0] == "uvloop-protocol":
            batch = "1"
        print(
            f"{run[0]:16} {run[1]:8} {medians[run]:>10,.0f} {max(rates):>10,.0f} "
            f"{per_cpu:>10,.0f} {lost:>7} {batch:>6}"
        )
    print()
    uv = medians.get(("uvloop-protocol", "uvloop"))
    for backend in args.backends.split(","):
        batch_rate = medians.get(("horizon-batch", backend))
        plain = medians.get(("anyio-plain", backend))
        if batch_rate and plain:
            line = f"{backend:8} horizon-batch / anyio-plain = {batch_rate / plain:.1f}x"
            if uv:
                line += f"; / uvloop-protocol = {batch_rate / uv:.2f}x"
            print(line)
    if args.json:
        payload = {
            "loadgen": loadgen_name,
            "args": {k: v for k, v in vars(args).items() if k not in ("json", "serve")},
            "results": [
                {"server": kind, "backend": backend, "rounds": rounds}
                for (kind, backend), rounds in results.items()
            ],
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))


if __name__ == "__main__":
    main()
