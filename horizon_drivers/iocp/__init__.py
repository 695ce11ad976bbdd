"""The Windows driver: I/O completion ports, overlapped Winsock, batches into the BufferPool.

Rules this package obeys:

* It imports only on Windows, and only once the extension is built; otherwise importing it
  raises ImportError saying why. On Linux it is tested under Wine: ``.ci/wine/run`` runs a real
  Windows CPython, cross-compiles the extension with mingw-w64 and runs the tests.
* Same API as :mod:`horizon_drivers.native` (``UdpSocket``, ``TcpListener``, ``TcpStream``,
  ``Runtime``, ``NAME``, ``DRIVER``), completion-based underneath: see
  ``horizon_drivers/native/windows/iocp.pyx`` for the rules of the compiled module (one completion
  port per process, receives in flight in each UDP socket's receive ring, GetQueuedCompletionStatusEx
  batches with the GIL released, cancellation on close returning every slot to FREE).
* Sockets come from :mod:`horizon_drivers.opening` with the Windows meaning of each option: the
  core plans SO_EXCLUSIVEADDRUSE where Linux would use SO_REUSEPORT, buffers, best-effort TOS;
  what Windows lacks (SO_REUSEPORT, TCP_QUICKACK, busy polling, GSO/GRO, SO_RXQ_OVFL) is in
  each socket's OptionReport as skipped, with the reason.
* Truncation: a datagram longer than the caller's slot is flagged with its true length (the
  ring's 64 KiB slots hold any datagram). Only a ring made smaller than a datagram
  (``ring_slot_size``) meets ERROR_MORE_DATA, where Windows does not tell the true length: then
  ``original_length`` is ``ring_slot_size + 1`` and ``UdpSocket.unknown_lengths`` counts it.

Example:
    >>> from horizon_core.buffers import BufferPool
    >>> from horizon_core.events import Interest
    >>> from horizon_drivers import iocp
    >>> with iocp.bind_udp("127.0.0.1:0") as server, iocp.bind_udp("127.0.0.1:0") as client:
    ...     with iocp.runtime() as rt:
    ...         token = rt.register(server, Interest.READABLE)
    ...         queued = client.send_batch([(b"ping", server.local_address)] * 3)
    ...         while server.queued < 3:
    ...             ready = rt.poll_once(5.0)
    ...         batch = BufferPool(16, 2048).batch(16)
    ...         received = server.recv_batch(batch)
    ...         batch.release()
    >>> queued, received
    (3, 3)
"""

from __future__ import annotations

import sys

from horizon_core.config import NetConfig
from horizon_core.contract import AddressLike
from horizon_drivers.module_driver import ModuleDriver

# A plain variable, not sys.platform itself: type checkers on Linux must still see the rest.
_PLATFORM: str = sys.platform
if _PLATFORM != "win32":
    raise ImportError(
        f"horizon_drivers.iocp is the Windows driver (I/O completion ports); this is "
        f"{_PLATFORM!r}. Use horizon_drivers.native or horizon_drivers.portable here; "
        "run .ci/wine/run to test the iocp driver under Wine."
    )

try:
    from horizon_drivers.native.windows.iocp import (
        DEFAULT_RING_SLOT_SIZE,
        DEFAULT_RING_SLOTS,
        STREAM_BUFFER,
        Runtime,
        TcpListener,
        TcpStream,
        UdpSocket,
        harvest,
    )
except ImportError as exc:  # pragma: no cover - depends on the build
    raise ImportError(
        "horizon_drivers.iocp is not built: run `pip install -e .` on Windows (MSVC), or "
        f".ci/wine/run to cross-compile it for Wine ({exc})"
    ) from exc

__all__ = [
    "DEFAULT_RING_SLOTS",
    "DEFAULT_RING_SLOT_SIZE",
    "DRIVER",
    "NAME",
    "STREAM_BUFFER",
    "Runtime",
    "TcpListener",
    "TcpStream",
    "UdpSocket",
    "bind_tcp",
    "bind_udp",
    "bind_udp_dual_stack",
    "connect_tcp",
    "harvest",
    "runtime",
    "under_wine",
]

#: The driver's name on the command line and in the contract suite.
NAME = "iocp"


def under_wine() -> bool:
    """True when this Windows process runs under Wine (ntdll exports ``wine_get_version``).

    Tests use it to say where Wine differs from Windows (see docs/windows.md).

    Example:
        >>> isinstance(under_wine(), bool)
        True
    """
    import ctypes

    try:
        ntdll = ctypes.WinDLL("ntdll")  # type: ignore[attr-defined,unused-ignore]
    except OSError:
        return False
    return hasattr(ntdll, "wine_get_version")


def bind_udp(address: AddressLike, config: NetConfig | None = None) -> UdpSocket:
    """Open a UDP socket with ``config``'s options and bind it (see ``UdpSocket.bind``).

    Example:
        >>> from horizon_drivers import iocp
        >>> with iocp.bind_udp("127.0.0.1:0") as sock:
        ...     sock.pending_receives == iocp.DEFAULT_RING_SLOTS
        True
    """
    return UdpSocket.bind(address, config)


def bind_udp_dual_stack(port: int, config: NetConfig | None = None) -> UdpSocket:
    """Bind ``[::]:port`` with IPV6_V6ONLY off, serving IPv4 and IPv6 peers.

    Example:
        >>> from horizon_drivers import iocp
        >>> with iocp.bind_udp_dual_stack(0) as sock:
        ...     sock.options["ipv6_only"].effective
        0
    """
    return UdpSocket.bind_dual_stack(port, config)


def bind_tcp(address: AddressLike, config: NetConfig | None = None) -> TcpListener:
    """Open, configure, bind and listen (backlog from ``config.tcp_backlog``); AcceptEx posted.

    Example:
        >>> from horizon_drivers import iocp
        >>> with iocp.bind_tcp("127.0.0.1:0") as listener:
        ...     listener.local_address.port > 0
        True
    """
    return TcpListener.bind(address, config)


def connect_tcp(address: AddressLike, config: NetConfig | None = None) -> TcpStream:
    """Start a ConnectEx; poll for writability, then ``finish_connect()``.

    Example:
        >>> from horizon_drivers import iocp
        >>> with iocp.bind_tcp("127.0.0.1:0") as listener:
        ...     with iocp.connect_tcp(listener.local_address) as stream:
        ...         stream.options["tcp_nodelay"].effective
        1
    """
    return TcpStream.connect(address, config)


def runtime(config: NetConfig | None = None) -> Runtime:
    """A new Runtime on the process's completion port.

    Example:
        >>> from horizon_drivers import iocp
        >>> with iocp.runtime() as rt:
        ...     rt.poll_once(0)
        []
    """
    return Runtime(config)


#: The driver object the contract suite and the command line use.
DRIVER: ModuleDriver[UdpSocket, TcpListener, TcpStream, Runtime] = ModuleDriver(
    NAME,
    bind_udp=bind_udp,
    bind_udp_dual_stack=bind_udp_dual_stack,
    bind_tcp=bind_tcp,
    connect_tcp=connect_tcp,
    runtime=runtime,
)
