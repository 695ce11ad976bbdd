"""The load generator ``horizon bench`` drives echo servers with: sockets from
:mod:`horizon_drivers.opening`, hot loops in C (:mod:`horizon_drivers.bench._loadgen`).

Ownership of the descriptors is simple and one-way: each ``run_*`` function opens its sockets
here, through :func:`~horizon_drivers.opening.open_udp` / ``open_tcp_stream`` (so the NetConfig
options are applied and reported like any driver's), hands the C core their ``fileno()`` for the
duration of one call, and closes them in a ``finally`` once the call returns or raises. The C
core borrows: it never closes, duplicates or keeps a descriptor. The Python socket objects stay
referenced by this frame for the whole call, so no descriptor can be closed (and its number
reused) under the C loop, which runs with the GIL released.

Round-trip samples come back from C raw and sorted; :func:`~horizon_drivers.bench.latency.
percentiles_ns` ranks them (nearest rank: every value reported was measured).

Example:
    >>> from horizon_drivers.bench.loadgen import run_udp_load
    >>> run_udp_load("127.0.0.1:9", window=0)
    Traceback (most recent call last):
    ...
    ValueError: window must be 1..1024, got 0
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable
from typing import Any

from horizon_core.addresses import SocketAddress, as_socket_address
from horizon_core.config import NetConfig
from horizon_core.contract import AddressLike
from horizon_core.options import OptionReport
from horizon_drivers.bench import _loadgen
from horizon_drivers.bench.latency import check_quantiles, percentiles_ns
from horizon_drivers.opening import open_tcp_stream, open_udp

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_PIPELINE",
    "MAX_TCP_SIZE",
    "MAX_WINDOW",
    "run_tcp_pipelined",
    "run_tcp_rtt",
    "run_tcp_throughput",
    "run_udp_load",
]

#: The largest window: one recvmmsg/sendmmsg vector.
MAX_WINDOW: int = _loadgen.MAX_WINDOW
#: The most connections :func:`run_tcp_throughput` opens.
MAX_CONNECTIONS: int = _loadgen.MAX_CONNECTIONS
#: The largest TCP write (throughput) or message (round trip), in bytes.
MAX_TCP_SIZE: int = _loadgen.MAX_TCP_SIZE
#: The most messages :func:`run_tcp_pipelined` keeps in flight.
MAX_PIPELINE: int = _loadgen.MAX_PIPELINE

_DEFAULT_BUFFER = 4 * 1024 * 1024


def _options(report: OptionReport) -> dict[str, str]:
    """What each NetConfig field became on the generator's socket: ``field: status``."""
    return {o.field: o.status.value for o in report.outcomes}


def _any_port(address: SocketAddress) -> str:
    return "0.0.0.0:0" if address.family == 4 else "[::]:0"


def _samples(raw: bytes) -> memoryview:
    return memoryview(raw).cast("q")


def run_udp_load(
    target: AddressLike,
    *,
    duration: float = 2.0,
    window: int = 256,
    payload_size: int = 64,
    warmup: float = 0.5,
    sample_rtt: bool = False,
    busy_wait: bool = False,
    loss_timeout: float = 0.05,
    max_samples: int = 2_000_000,
    socket_buffer: int = _DEFAULT_BUFFER,
    quantiles: Iterable[float] | None = None,
    gso: bool = True,
) -> dict[str, Any]:
    """Drive the UDP echo server at ``target`` with ``window`` datagrams outstanding.

    The dict holds ``sent``, ``received`` (in the measured interval after ``warmup``),
    ``total_sent``, ``total_received`` (warm-up included), ``lost``, ``timeouts``, ``recv_calls``,
    ``send_calls``, ``seconds`` (the measured interval), ``rate`` (replies per second in it),
    ``gso`` (True when the whole run sent GSO messages), ``socket_options`` (what opening.py
    reported for the generator's socket) and, with ``sample_rtt``, ``rtt_ns`` percentiles
    (``min``, ``p50``, ``p90``, ``p99``, ``p999``, ``max``, ``mean``, ``samples``).
    ``quantiles`` (fractions in [0, 1]) adds ``rtt_ns["quantiles"]``: ``(fraction, ns)`` pairs
    in the order given. ``socket_buffer`` is the socket's SO_RCVBUF/SO_SNDBUF (best effort).
    """
    wanted = check_quantiles(quantiles)
    address = as_socket_address(target)
    config = NetConfig(recv_buf=socket_buffer, send_buf=socket_buffer)
    sock, report = open_udp(_any_port(address), config)
    with sock:
        sock.connect(address.to_sockaddr())
        result = _loadgen.udp_load(
            sock.fileno(), duration=duration, window=window, payload_size=payload_size,
            warmup=warmup, sample_rtt=sample_rtt, busy_wait=busy_wait,
            loss_timeout=loss_timeout, max_samples=max_samples, gso=gso,
        )
    raw = result.pop("samples", None)
    if raw is not None:
        result["rtt_ns"] = percentiles_ns(_samples(raw), wanted)
    result["socket_options"] = _options(report)
    return result


def _streams(address: SocketAddress, count: int) -> tuple[list[socket.socket], OptionReport]:
    """``count`` TCP sockets whose connect to ``address`` has started (all closed on failure)."""
    socks: list[socket.socket] = []
    report: OptionReport | None = None
    try:
        for _ in range(count):
            sock, report = open_tcp_stream(address, NetConfig())
            socks.append(sock)
    except OSError as exc:
        for sock in socks:
            sock.close()
        raise type(exc)(exc.errno, f"TCP load generator: connect to {address}: "
                                   f"{exc.strerror or exc}") from exc
    assert report is not None
    return socks, report


def run_tcp_throughput(
    target: AddressLike, *, duration: float = 2.0, connections: int = 1, size: int = 65536,
    warmup: float = 0.5, timeout: float = 5.0,
) -> dict[str, Any]:
    """Stream ``size``-byte writes on ``connections`` connections to the echo server at
    ``target`` while reading the echo back; return a dict.

    The dict holds ``bytes`` (echoed bytes received in the measured interval after ``warmup``),
    ``seconds`` (that interval), ``bytes_per_s``, ``total_sent`` and ``total_received`` (warm-up
    and drain included), ``drained`` (every byte sent came back: then the two totals are equal),
    ``drain_seconds``, ``send_calls``, ``recv_calls``, ``poll_calls``, ``connections``, ``size``
    and ``socket_options``. The run lasts at most ``timeout`` (connecting) + ``warmup`` +
    ``duration`` + ``timeout`` (draining) seconds; OSError on a refused connect, a reset, a
    closed connection or ``timeout`` seconds without progress.
    """
    if not 1 <= connections <= MAX_CONNECTIONS:
        raise ValueError(f"connections must be 1..{MAX_CONNECTIONS}, got {connections}")
    if not 1 <= size <= MAX_TCP_SIZE:
        raise ValueError(f"size must be 1..{MAX_TCP_SIZE}, got {size}")
    address = as_socket_address(target)
    socks, report = _streams(address, connections)
    with contextlib.ExitStack() as owned:
        for sock in socks:
            owned.enter_context(sock)
        result = _loadgen.tcp_throughput(
            [sock.fileno() for sock in socks], peer=str(address), duration=duration,
            size=size, warmup=warmup, timeout=timeout,
        )
    result["socket_options"] = _options(report)
    return result


def run_tcp_rtt(
    target: AddressLike,
    *,
    duration: float = 2.0,
    size: int = 64,
    warmup: float = 0.5,
    busy_wait: bool = False,
    timeout: float = 5.0,
    max_samples: int = 2_000_000,
    quantiles: Iterable[float] | None = None,
) -> dict[str, Any]:
    """Ping-pong ``size``-byte messages with the echo server at ``target`` on one connection.

    The dict holds ``round_trips`` (in the measured interval after ``warmup``), ``seconds``,
    ``rate`` (round trips per second), ``total_round_trips``, ``total_sent``,
    ``total_received``, ``send_calls``, ``recv_calls``, ``poll_calls``, ``size``,
    ``socket_options`` and ``rtt_ns``: the percentiles :func:`run_udp_load` reports
    (``quantiles`` adds the ``(fraction, ns)`` pairs asked for). ``busy_wait=True`` spins on a
    nonblocking recv instead of sleeping in poll(). The run lasts at most ``timeout`` +
    ``warmup`` + ``duration`` + ``timeout`` seconds; OSError on a refused connect, a reset, a
    closed connection, a wrong echo or ``timeout`` seconds without one.
    """
    wanted = check_quantiles(quantiles)
    if not 1 <= size <= MAX_TCP_SIZE:
        raise ValueError(f"size must be 1..{MAX_TCP_SIZE}, got {size}")
    address = as_socket_address(target)
    socks, report = _streams(address, 1)
    with socks[0] as sock:
        result = _loadgen.tcp_rtt(
            sock.fileno(), peer=str(address), duration=duration, size=size, warmup=warmup,
            busy_wait=busy_wait, timeout=timeout, max_samples=max_samples,
        )
    result["rtt_ns"] = percentiles_ns(_samples(result.pop("samples")), wanted)
    result["socket_options"] = _options(report)
    return result


def run_tcp_pipelined(
    target: AddressLike,
    *,
    duration: float = 2.0,
    size: int = 64,
    pipeline: int = 256,
    warmup: float = 0.5,
    busy_wait: bool = False,
    timeout: float = 5.0,
    max_samples: int = 2_000_000,
    quantiles: Iterable[float] | None = None,
) -> dict[str, Any]:
    """Keep ``pipeline`` ``size``-byte messages in flight to the echo server at ``target`` on
    one connection; return a dict.

    The dict holds ``messages`` (echoed in the measured interval after ``warmup``),
    ``seconds``, ``rate`` (messages per second), ``total_messages``, ``total_sent``,
    ``total_received`` (bytes), ``send_calls``, ``recv_calls``, ``poll_calls``, ``size``,
    ``pipeline``, ``socket_options`` and ``rtt_ns``: each message's round trip under that
    load, as :func:`run_tcp_rtt` reports it. The run lasts at most ``timeout`` + ``warmup`` +
    ``duration`` seconds; OSError on a refused connect, a reset, a closed connection, an echo
    out of order or ``timeout`` seconds without progress.

    Example:
        >>> run_tcp_pipelined("127.0.0.1:9", pipeline=0)
        Traceback (most recent call last):
        ...
        ValueError: pipeline must be 1..16384, got 0
    """
    wanted = check_quantiles(quantiles)
    if not 1 <= size <= MAX_TCP_SIZE:
        raise ValueError(f"size must be 1..{MAX_TCP_SIZE}, got {size}")
    if not 1 <= pipeline <= MAX_PIPELINE:
        raise ValueError(f"pipeline must be 1..{MAX_PIPELINE}, got {pipeline}")
    address = as_socket_address(target)
    socks, report = _streams(address, 1)
    with socks[0] as sock:
        result = _loadgen.tcp_pipelined(
            sock.fileno(), peer=str(address), duration=duration, size=size, pipeline=pipeline,
            warmup=warmup, busy_wait=busy_wait, timeout=timeout, max_samples=max_samples,
        )
    result["rtt_ns"] = percentiles_ns(_samples(result.pop("samples")), wanted)
    result["socket_options"] = _options(report)
    return result
