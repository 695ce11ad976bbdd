"""The C reference echo server, peer ``c`` of ``horizon bench``: sockets here, the loop in C.

Ownership is one-way, as for the load generator: :class:`ReferenceServer` opens the UDP socket
or the TCP listener through :mod:`horizon_drivers.opening` with the NetConfig every other server
gets, plus a nonblocking pipe, and lends their descriptors to
:mod:`horizon_drivers.bench._reference` for one :meth:`~ReferenceServer.serve` call; it closes
them when it is closed. The C loop runs with the GIL released and returns once the pipe's read
end is readable: :meth:`~ReferenceServer.stop` writes a byte to it from any thread, and
:meth:`~ReferenceServer.stop_on_signals` makes the pipe the process's ``signal.set_wakeup_fd``,
so SIGTERM or SIGINT wakes the loop at once, even while the main thread is inside C (Python's
own signal handler writes the signal number to the wakeup descriptor before anything else).
The connections the TCP server accepts are the C loop's own: it closes every one before
returning.

Example:
    >>> reference_status()[0] in (True, False)
    True
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Literal

import attrs

from horizon_core.addresses import SocketAddress, SocketAddressLike, as_socket_address
from horizon_core.config import NetConfig
from horizon_drivers.opening import open_tcp_listener, open_udp

__all__ = [
    "DEFAULT_BATCH",
    "REFERENCE",
    "ReferenceServer",
    "reference_status",
    "serve_reference",
]

#: The peer name of the C reference server.
REFERENCE = "c"
#: Datagrams per recvmmsg/sendmmsg of the UDP reference server.
DEFAULT_BATCH = 64


def reference_status() -> tuple[bool, str]:
    """Whether the compiled reference server imports here, and why not.

    Example:
        >>> ok, reason = reference_status()
        >>> ok or "not built" in reason
        True
    """
    try:
        from horizon_drivers.bench import _reference  # noqa: F401
    except ImportError as exc:
        return False, f"the C reference server is not built here ({exc})"
    return True, ""


class ReferenceServer:
    """One C echo server (``udp`` or ``tcp``) bound to ``address`` with ``config`` applied.

    ``spin_us`` busy-polls that many microseconds before each blocking wait;
    ``batch`` is the UDP recvmmsg/sendmmsg batch. Binding errors raise here, before anything
    runs. Use it as a context manager: leaving closes the socket and the stop pipe.

    Example:
        >>> import threading
        >>> with ReferenceServer("udp", "127.0.0.1:0", NetConfig()) as server:
        ...     worker = threading.Thread(target=server.serve)
        ...     worker.start()
        ...     server.stop()
        ...     worker.join(10)
        ...     worker.is_alive()
        False
    """

    def __init__(
        self,
        protocol: Literal["udp", "tcp"],
        address: SocketAddressLike,
        config: NetConfig,
        *,
        spin_us: int = 0,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        from horizon_drivers.bench import _reference

        self._c = _reference
        if protocol not in ("udp", "tcp"):
            raise ValueError(f"protocol must be udp or tcp, got {protocol!r}")
        if not 1 <= batch <= _reference.MAX_BATCH:
            raise ValueError(f"batch must be 1..{_reference.MAX_BATCH}, got {batch}")
        if not 0 <= spin_us <= _reference.MAX_SPIN_US:
            raise ValueError(f"spin_us must be 0..{_reference.MAX_SPIN_US}, got {spin_us}")
        self.protocol = protocol
        self.spin_us = spin_us
        self.batch = batch
        opener = open_udp if protocol == "udp" else open_tcp_listener
        self._sock: socket.socket
        self._sock, self.report = opener(as_socket_address(address), config)
        try:
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except BaseException:
            self._sock.close()
            raise
        self._closed = False

    @property
    def address(self) -> SocketAddress:
        """Where the server listens (the real port for port 0)."""
        return SocketAddress.from_sockaddr(self._sock.getsockname())

    def serve(self) -> dict[str, Any]:
        """Run the C loop (GIL released) until :meth:`stop`; return its counters.

        OSError when the loop fails. The socket and the pipe stay open: close the server.
        """
        if self._closed:
            raise ValueError("the reference server is closed")
        if self.protocol == "udp":
            counts = self._c.serve_udp(self._sock.fileno(), self._wake_r, batch=self.batch,
                                       spin_us=self.spin_us)
        else:
            counts = self._c.serve_tcp(self._sock.fileno(), self._wake_r, spin_us=self.spin_us)
        counts["protocol"] = self.protocol
        return counts

    def stop(self) -> None:
        """Make :meth:`serve` return (now, or at once when it starts); safe from any thread."""
        with contextlib.suppress(BlockingIOError):  # the pipe is full: a stop is pending anyway
            os.write(self._wake_w, b"\0")

    @contextlib.contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """Make SIGINT and SIGTERM stop :meth:`serve` while the block runs (main thread only).

        The stop pipe becomes ``signal.set_wakeup_fd``'s descriptor, and both signals get a
        Python handler (without one, SIGTERM's default action would end the process before it
        reports); the previous wakeup descriptor and handlers come back afterwards.
        """
        previous_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        wanted = (signal.SIGINT, signal.SIGTERM)
        previous = {signum: signal.signal(signum, lambda *_: None) for signum in wanted}
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)
            signal.set_wakeup_fd(previous_fd)

    def close(self) -> None:
        """Close the socket and the stop pipe (idempotent); only after :meth:`serve` returned."""
        if self._closed:
            return
        self._closed = True
        self._sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> ReferenceServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def serve_reference(
    protocol: Literal["udp", "tcp"],
    address: SocketAddressLike,
    ready: Callable[[SocketAddress], None],
    *,
    config: NetConfig | None = None,
    buffer: int | None = None,
    spin_us: int = 0,
) -> dict[str, Any]:
    """Serve ``protocol`` echo with the C reference server until SIGTERM or SIGINT (main
    thread); return its counters.

    ``config`` is the NetConfig the socket is opened with (default ``NetConfig()``); ``buffer``
    sets its SO_RCVBUF/SO_SNDBUF on top. ``ready`` is called with the bound address once the
    signals are wired to the stop pipe, so a SIGTERM sent after it always stops the loop.
    """
    config = NetConfig() if config is None else config
    if buffer is not None:
        config = attrs.evolve(config, recv_buf=buffer, send_buf=buffer)
    server = ReferenceServer(protocol, address, config, spin_us=spin_us)
    with server, server.stop_on_signals():
        ready(server.address)
        return server.serve()
