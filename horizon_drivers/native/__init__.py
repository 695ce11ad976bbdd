"""The Linux native driver: Cython over epoll, recvmmsg/sendmmsg and accept4.

Rules this package obeys:

* It imports only on Linux, and only once the extension modules are built; otherwise importing it
  raises ImportError saying why (the portable driver works everywhere).
* Sockets come from :mod:`horizon_drivers.opening` (the core's option plan, applied and read
  back), then a ``cdef class`` takes over the descriptor: it owns it, closes it in ``close()`` or
  when collected, and raises :class:`~horizon_core.errors.SocketClosedError` on any use after.
* The GIL is released around every syscall; EINTR is retried; would-block is ``BlockingIOError``.
* The batch paths allocate no Python object per datagram: ``recv_batch`` fills a
  :class:`~horizon_core.buffers.Batch` with one recvmmsg, ``send_batch`` sends one with one
  sendmmsg, addresses stay in the pool's packed form.
* :class:`Runtime` is level-triggered unless ``edge_triggered=True`` (then drain each ready
  source until ``BlockingIOError``). Tokens come from the core's generational Slab; a
  deregistered token never produces an event. ``NetConfig.spin_budget`` makes ``poll_once``
  busy-poll that many microseconds before blocking; ``NetConfig.poll_timeout`` is the default
  wait of ``poll_once(None)``.

Example:
    >>> from horizon_core.buffers import BufferPool
    >>> from horizon_core.events import Interest
    >>> from horizon_drivers import native
    >>> with native.bind_udp("127.0.0.1:0") as server, native.bind_udp("127.0.0.1:0") as client:
    ...     with native.runtime() as rt:
    ...         token = rt.register(server, Interest.READABLE)
    ...         queued = client.send_batch([(b"ping", server.local_address)] * 3)
    ...         ready = rt.poll_once(5.0)
    ...         batch = BufferPool(16, 2048).batch(16)
    ...         received = server.recv_batch(batch)
    ...         echoed = server.send_batch(batch)  # addresses are already packed: no decoding
    ...         batch.release()
    >>> queued, [ev.token == token for ev in ready], received, echoed
    (3, [True], 3, 3)
"""

from __future__ import annotations

import sys

if not sys.platform.startswith("linux"):
    raise ImportError(
        f"horizon_drivers.native is the Linux driver (epoll, recvmmsg/sendmmsg); this is "
        f"{sys.platform!r}. Use horizon_drivers.portable (or aio) here."
    )

try:
    from horizon_drivers.native._linux_epoll import Runtime
    from horizon_drivers.native._linux_tcp import TcpListener, TcpStream
    from horizon_drivers.native._linux_udp import MAX_BATCH, UdpSocket
except ImportError as exc:  # pragma: no cover - depends on the build
    raise ImportError(
        "horizon_drivers.native is not built: run `pip install -e .` or "
        f"`python setup.py build_ext --inplace` in the project root ({exc})"
    ) from exc

from horizon_core.config import NetConfig
from horizon_core.contract import AddressLike
from horizon_drivers.module_driver import ModuleDriver

__all__ = [
    "DRIVER",
    "MAX_BATCH",
    "NAME",
    "Runtime",
    "TcpListener",
    "TcpStream",
    "UdpSocket",
    "bind_tcp",
    "bind_udp",
    "bind_udp_dual_stack",
    "connect_tcp",
    "runtime",
]

#: The driver's name on the command line and in the contract suite.
NAME = "native"


def bind_udp(address: AddressLike, config: NetConfig | None = None) -> UdpSocket:
    """Open a UDP socket with ``config``'s options and bind it (see ``UdpSocket.bind``).

    Example:
        >>> from horizon_drivers import native
        >>> with native.bind_udp("127.0.0.2:0") as sock:
        ...     str(sock.local_address.host)
        '127.0.0.2'
    """
    return UdpSocket.bind(address, config)


def bind_udp_dual_stack(port: int, config: NetConfig | None = None) -> UdpSocket:
    """Bind ``[::]:port`` with IPV6_V6ONLY off, serving IPv4 and IPv6 peers.

    Example:
        >>> from horizon_drivers import native
        >>> with native.bind_udp_dual_stack(0) as sock:
        ...     sock.options["ipv6_only"].effective
        0
    """
    return UdpSocket.bind_dual_stack(port, config)


def bind_tcp(address: AddressLike, config: NetConfig | None = None) -> TcpListener:
    """Open, configure, bind and listen (backlog from ``config.tcp_backlog``).

    Example:
        >>> from horizon_drivers import native
        >>> with native.bind_tcp("127.0.0.1:0") as listener:
        ...     listener.local_address.port > 0
        True
    """
    return TcpListener.bind(address, config)


def connect_tcp(address: AddressLike, config: NetConfig | None = None) -> TcpStream:
    """Start a nonblocking connect; poll for writability, then ``finish_connect()``.

    Example:
        >>> from horizon_drivers import native
        >>> with native.bind_tcp("127.0.0.1:0") as listener:
        ...     with native.connect_tcp(listener.local_address) as stream:
        ...         stream.options["tcp_nodelay"].effective
        1
    """
    return TcpStream.connect(address, config)


def runtime(config: NetConfig | None = None, *, edge_triggered: bool = False) -> Runtime:
    """A new epoll Runtime (level-triggered unless ``edge_triggered``).

    Example:
        >>> from horizon_drivers import native
        >>> with native.runtime() as rt:
        ...     rt.poll_once(0)
        []
    """
    return Runtime(config, edge_triggered=edge_triggered)


#: The driver object the contract suite and the command line use.
DRIVER: ModuleDriver[UdpSocket, TcpListener, TcpStream, Runtime] = ModuleDriver(
    NAME,
    bind_udp=bind_udp,
    bind_udp_dual_stack=bind_udp_dual_stack,
    bind_tcp=bind_tcp,
    connect_tcp=connect_tcp,
    runtime=runtime,
)
