"""The Driver object of a compiled driver module, made from the module's four classes.

The compiled drivers (native, iocp) are classes with constructors (``UdpSocket.bind``,
``UdpSocket.bind_dual_stack``, ``TcpListener.bind``, ``TcpStream.connect``, ``Runtime(config)``);
the contract suite and the command line want one object satisfying
:class:`horizon_core.contract.Driver`. :class:`ModuleDriver` is that object, once, for every such
module, and the module's factory functions are its bound methods (``bind_udp = DRIVER.bind_udp``),
so they are written and documented here only.

Example:
    >>> from horizon_core.contract import Driver
    >>> from horizon_drivers.module_driver import ModuleDriver
    >>> from horizon_drivers.native.linux import epoll, tcp, udp
    >>> driver = ModuleDriver("demo", udp.UdpSocket, tcp.TcpListener, tcp.TcpStream, epoll.Runtime)
    >>> isinstance(driver, Driver), driver.name
    (True, 'demo')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, Self, TypeVar

from horizon_core.config import NetConfig
from horizon_core.contract import AddressLike, Runtime, TcpListener, TcpStream, UdpSocket

__all__ = ["ModuleDriver"]


class _BindableUdpSocket(UdpSocket, Protocol):
    @classmethod
    def bind(cls, address: AddressLike, config: NetConfig | None = None) -> Self: ...

    @classmethod
    def bind_dual_stack(cls, port: int, config: NetConfig | None = None) -> Self: ...


class _BindableTcpListener(TcpListener, Protocol):
    @classmethod
    def bind(cls, address: AddressLike, config: NetConfig | None = None) -> Self: ...


class _ConnectableTcpStream(TcpStream, Protocol):
    @classmethod
    def connect(cls, address: AddressLike, config: NetConfig | None = None) -> Self: ...


UdpT = TypeVar("UdpT", bound=_BindableUdpSocket)
ListenerT = TypeVar("ListenerT", bound=_BindableTcpListener)
StreamT = TypeVar("StreamT", bound=_ConnectableTcpStream)
RuntimeT = TypeVar("RuntimeT", bound=Runtime)


class ModuleDriver(Generic[UdpT, ListenerT, StreamT, RuntimeT]):
    """Implements the Driver protocol with a driver module's classes' constructors.

    ``runtime`` is anything called as ``runtime(config)``: usually the Runtime class itself.

    Example:
        >>> from horizon_drivers.native import DRIVER
        >>> DRIVER.name, DRIVER.bind_udp.__self__ is DRIVER
        ('native', True)
    """

    __slots__ = ("_listener", "_name", "_runtime", "_stream", "_udp")

    def __init__(
        self,
        name: str,
        udp: type[UdpT],
        listener: type[ListenerT],
        stream: type[StreamT],
        runtime: Callable[[NetConfig | None], RuntimeT],
    ) -> None:
        self._name = name
        self._udp = udp
        self._listener = listener
        self._stream = stream
        self._runtime = runtime

    @property
    def name(self) -> str:
        """The driver's name on the command line and in the contract suite."""
        return self._name

    def bind_udp(self, address: AddressLike, config: NetConfig | None = None) -> UdpT:
        """Open a UDP socket with ``config``'s options and bind it (see ``UdpSocket.bind``).

        Example:
            >>> from horizon_drivers import native
            >>> with native.bind_udp("127.0.0.2:0") as sock:
            ...     str(sock.local_address.host)
            '127.0.0.2'
        """
        return self._udp.bind(address, config)

    def bind_udp_dual_stack(self, port: int, config: NetConfig | None = None) -> UdpT:
        """Bind ``[::]:port`` with IPV6_V6ONLY off, serving IPv4 and IPv6 peers.

        Example:
            >>> from horizon_drivers import native
            >>> with native.bind_udp_dual_stack(0) as sock:
            ...     sock.options["ipv6_only"].effective
            0
        """
        return self._udp.bind_dual_stack(port, config)

    def bind_tcp(self, address: AddressLike, config: NetConfig | None = None) -> ListenerT:
        """Open, configure, bind and listen (backlog from ``config.tcp_backlog``).

        Example:
            >>> from horizon_drivers import native
            >>> with native.bind_tcp("127.0.0.1:0") as listener:
            ...     listener.local_address.port > 0
            True
        """
        return self._listener.bind(address, config)

    def connect_tcp(self, address: AddressLike, config: NetConfig | None = None) -> StreamT:
        """Start a nonblocking connect; poll for writability, then ``finish_connect()``.

        Example:
            >>> from horizon_drivers import native
            >>> with native.bind_tcp("127.0.0.1:0") as listener:
            ...     with native.connect_tcp(listener.local_address) as stream:
            ...         stream.options["tcp_nodelay"].effective
            1
        """
        return self._stream.connect(address, config)

    def runtime(self, config: NetConfig | None = None) -> RuntimeT:
        """A new Runtime for this driver's sockets.

        Example:
            >>> from horizon_drivers import native
            >>> with native.DRIVER.runtime() as rt:
            ...     rt.poll_once(0)
            []
        """
        return self._runtime(config)

    def __repr__(self) -> str:
        return f"<horizon_drivers.{self._name} driver>"
