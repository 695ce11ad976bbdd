"""A Driver object made from a driver module's factory functions.

The compiled drivers (native, iocp) expose module functions (``bind_udp``...) as their primary
API; the contract suite and the command line want one object satisfying
:class:`horizon_core.contract.Driver`. This class is that object, once, for every such module.

Example:
    >>> from horizon_core.contract import Driver
    >>> from horizon_drivers.module_driver import ModuleDriver
    >>> from horizon_drivers import portable
    >>> driver = ModuleDriver(
    ...     "demo",
    ...     bind_udp=portable.bind_udp,
    ...     bind_udp_dual_stack=portable.bind_udp_dual_stack,
    ...     bind_tcp=portable.bind_tcp,
    ...     connect_tcp=portable.connect_tcp,
    ...     runtime=portable.runtime,
    ... )
    >>> isinstance(driver, Driver), driver.name
    (True, 'demo')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from horizon_core.config import NetConfig
from horizon_core.contract import AddressLike, Runtime, TcpListener, TcpStream, UdpSocket

__all__ = ["ModuleDriver"]

UdpT = TypeVar("UdpT", bound=UdpSocket)
ListenerT = TypeVar("ListenerT", bound=TcpListener)
StreamT = TypeVar("StreamT", bound=TcpStream)
RuntimeT = TypeVar("RuntimeT", bound=Runtime)


class ModuleDriver(Generic[UdpT, ListenerT, StreamT, RuntimeT]):
    """Forwards the Driver protocol's methods to a driver module's functions.

    Example:
        >>> from horizon_drivers.native import DRIVER
        >>> DRIVER.name
        'native'
    """

    __slots__ = ("_bind_tcp", "_bind_udp", "_bind_udp_dual_stack", "_connect_tcp", "_name", "_runtime")

    def __init__(
        self,
        name: str,
        *,
        bind_udp: Callable[[AddressLike, NetConfig | None], UdpT],
        bind_udp_dual_stack: Callable[[int, NetConfig | None], UdpT],
        bind_tcp: Callable[[AddressLike, NetConfig | None], ListenerT],
        connect_tcp: Callable[[AddressLike, NetConfig | None], StreamT],
        runtime: Callable[[NetConfig | None], RuntimeT],
    ) -> None:
        self._name = name
        self._bind_udp = bind_udp
        self._bind_udp_dual_stack = bind_udp_dual_stack
        self._bind_tcp = bind_tcp
        self._connect_tcp = connect_tcp
        self._runtime = runtime

    @property
    def name(self) -> str:
        """The driver's name on the command line and in the contract suite."""
        return self._name

    def bind_udp(self, address: AddressLike, config: NetConfig | None = None) -> UdpT:
        """Open a UDP socket with ``config``'s options and bind it."""
        return self._bind_udp(address, config)

    def bind_udp_dual_stack(self, port: int, config: NetConfig | None = None) -> UdpT:
        """Bind ``[::]:port`` with IPV6_V6ONLY off, serving IPv4 and IPv6."""
        return self._bind_udp_dual_stack(port, config)

    def bind_tcp(self, address: AddressLike, config: NetConfig | None = None) -> ListenerT:
        """Open, configure, bind and listen."""
        return self._bind_tcp(address, config)

    def connect_tcp(self, address: AddressLike, config: NetConfig | None = None) -> StreamT:
        """Start a nonblocking connect."""
        return self._connect_tcp(address, config)

    def runtime(self, config: NetConfig | None = None) -> RuntimeT:
        """A new Runtime for this driver's sockets."""
        return self._runtime(config)

    def __repr__(self) -> str:
        return f"<horizon_drivers.{self._name} driver>"
