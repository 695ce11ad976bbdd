"""TCP echo load: bulk throughput and ping-pong round trips against one server.

The UDP load comes from the native C generator; TCP is measured here because per-byte cost is
the kernel's, not Python's: bulk sends move 64 KiB per call with the GIL released, and a round
trip is two syscalls. What Python adds to each ping-pong (a few µs) is the same for every server
measured, and the table reports it with the machine so readers can judge.

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
