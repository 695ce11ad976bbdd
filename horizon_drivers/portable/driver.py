"""The portable driver's factory: the object the registry and the contract suite use.

Example:
    >>> from horizon_drivers.portable.driver import DRIVER
    >>> DRIVER.name
    'portable'
"""

from __future__ import annotations

from typing import Final

from horizon_core.addresses import as_socket_address
from horizon_core.config import NetConfig, resolve_config
from horizon_core.contract import AddressLike
from horizon_drivers.opening import (
    open_tcp_listener,
    open_tcp_stream,
    open_udp,
    open_udp_dual_stack,
)
from horizon_drivers.portable.loop import Runtime
from horizon_drivers.portable.tcp import TcpListener, TcpStream
from horizon_drivers.portable.udp import UdpSocket

__all__ = ["DRIVER", "NAME", "PortableDriver"]

#: The name the registry and the command line use.
NAME: Final = "portable"


class PortableDriver:
    """Opens portable sockets and runtimes (implements :class:`horizon_core.contract.Driver`).

    Every method validates its address and config before any socket exists.

    Example:
        >>> from horizon_drivers.portable import DRIVER
        >>> with DRIVER.bind_udp("127.0.0.1:0") as sock:
        ...     sock.local_address.family
        4
    """

    name: Final = NAME

    def bind_udp(self, address: AddressLike, config: NetConfig | None = None) -> UdpSocket:
        """Open a UDP socket with ``config``'s options and bind it to ``address``."""
        sock, report = open_udp(as_socket_address(address), resolve_config(config))
        return UdpSocket(sock, report)

    def bind_udp_dual_stack(self, port: int, config: NetConfig | None = None) -> UdpSocket:
        """Bind ``[::]:port`` with IPV6_V6ONLY off, serving IPv4 and IPv6 peers."""
        sock, report = open_udp_dual_stack(port, resolve_config(config))
        return UdpSocket(sock, report)

    def bind_tcp(self, address: AddressLike, config: NetConfig | None = None) -> TcpListener:
        """Open, configure, bind and listen (backlog from ``config.tcp_backlog``)."""
        cfg = resolve_config(config)
        sock, report = open_tcp_listener(as_socket_address(address), cfg)
        return TcpListener(sock, report, cfg)

    def connect_tcp(self, address: AddressLike, config: NetConfig | None = None) -> TcpStream:
        """Start a nonblocking connect; see :meth:`TcpStream.finish_connect`."""
        target = as_socket_address(address)
        sock, report = open_tcp_stream(target, resolve_config(config))
        return TcpStream(sock, report, peer=target, connecting=True)

    def runtime(self, config: NetConfig | None = None) -> Runtime:
        """A new selectors-based Runtime."""
        return Runtime(resolve_config(config))

    def __repr__(self) -> str:
        return "<portable driver>"


#: The portable driver's factory.
DRIVER: Final = PortableDriver()
