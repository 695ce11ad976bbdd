"""TCP echo load in Python: the fallback ``horizon bench`` uses when the native generator is missing.

``horizon bench`` measures TCP with the native C load generator
(:func:`~horizon_drivers.bench.loadgen.run_tcp_throughput` and ``run_tcp_rtt``). Where that
extension is not built, this client does the same two jobs, and the bench output says so: bulk
sends move 64 KiB per call with the GIL released, but what Python adds to each ping-pong (a few
µs, plus a thread hand-off for the streaming reader) makes its numbers a floor, not the server's.

Example:
    >>> TcpThroughput(bytes_echoed=3 * TCP_CHUNK, seconds=0.5).bytes_per_s
    393216.0
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import attrs

from horizon_core.addresses import SocketAddress

__all__ = ["TCP_CHUNK", "TcpThroughput", "measure_tcp_rtts", "measure_tcp_throughput"]

#: Bytes per send call in the throughput test.
TCP_CHUNK = 65536

_CONNECT_TIMEOUT = 5.0
# A server that stops answering must not hang the load process: every blocking call times out.
_IO_TIMEOUT = 5.0


@attrs.frozen
class TcpThroughput:
    """Bytes echoed back within the measured interval.

    Example:
        >>> TcpThroughput(2_000_000, 2.0).bytes_per_s
        1000000.0
    """

    bytes_echoed: int
    seconds: float

    @property
    def bytes_per_s(self) -> float:
        """Echoed bytes per second."""
        return self.bytes_echoed / self.seconds if self.seconds > 0 else 0.0


def _connect(address: SocketAddress) -> socket.socket:
    family = socket.AF_INET if address.family == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(_CONNECT_TIMEOUT)
    sock.connect(address.to_sockaddr())
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(_IO_TIMEOUT)
    return sock


def measure_tcp_throughput(address: SocketAddress, duration: float) -> TcpThroughput:
    """Stream ``TCP_CHUNK`` writes for ``duration`` seconds and count the bytes echoed back.

    A sender thread writes while this thread reads; the count covers bytes received between the
    first byte and the deadline.
    """
    sock = _connect(address)
    stop = threading.Event()
    failure: list[BaseException] = []

    def send_loop() -> None:
        chunk = bytes(TCP_CHUNK)
        try:
            while not stop.is_set():
                sock.sendall(chunk)
        except OSError as exc:
            if not stop.is_set():
                failure.append(exc)

    sender = threading.Thread(target=send_loop, daemon=True)
    buffer = bytearray(TCP_CHUNK * 4)
    received = 0
    with sock:
        sender.start()
        start = time.perf_counter()
        deadline = start + duration
        try:
            while (now := time.perf_counter()) < deadline:
                n = sock.recv_into(buffer)
                if n == 0:
                    raise ConnectionError("the server closed the connection during the test")
                received += n
        finally:
            stop.set()
            # Unblock the sender (it may be waiting for the server to read) before closing.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sender.join(_IO_TIMEOUT)
    if failure:
        raise failure[0]
    return TcpThroughput(received, now - start)


def measure_tcp_rtts(address: SocketAddress, duration: float, size: int) -> list[int]:
    """Ping-pong ``size``-byte messages for ``duration`` seconds; return round trips in ns."""
    message = bytes(size)
    buffer = bytearray(max(size, 1))
    view = memoryview(buffer)
    samples: list[int] = []
    clock = time.perf_counter_ns
    with _connect(address) as sock:
        deadline = clock() + int(duration * 1e9)
        while (sent_at := clock()) < deadline:
            sock.sendall(message)
            got = 0
            while got < size:
                n = sock.recv_into(view[got:size])
                if n == 0:
                    raise ConnectionError("the server closed the connection during the test")
                got += n
            samples.append(clock() - sent_at)
    return samples
