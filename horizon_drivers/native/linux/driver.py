"""The Linux epoll driver's module functions and its ``DRIVER`` object.

Import them from :mod:`horizon_drivers.native`, which re-exports them on Linux.
"""

from __future__ import annotations

from horizon_core.config import NetConfig
from horizon_core.contract import AddressLike
from horizon_drivers.module_driver import ModuleDriver
from horizon_drivers.native.linux.epoll import Runtime
from horizon_drivers.native.linux.tcp import TcpListener, TcpStream
from horizon_drivers.native.linux.udp import MAX_BATCH, UdpSocket

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
