"""The Linux epoll driver's ``DRIVER`` object and module functions.

Import them from :mod:`horizon_drivers.native`, which re-exports this module's ``__all__`` on Linux.
The factory functions are ``DRIVER``'s bound methods (documented in
:mod:`horizon_drivers.module_driver`); only :func:`runtime` is this driver's own, for its
``edge_triggered`` keyword.
"""

from __future__ import annotations

from typing import Final

from horizon_core.config import NetConfig
from horizon_drivers.module_driver import ModuleDriver
from horizon_drivers.native.linux.epoll import Runtime
from horizon_drivers.native.linux.tcp import TcpListener, TcpStream
from horizon_drivers.native.linux.udp import MAX_BATCH, UdpSocket

__all__ = [
    "DRIVER", "MAX_BATCH", "NAME", "Runtime", "TcpListener", "TcpStream", "UdpSocket",
    "bind_tcp", "bind_udp", "bind_udp_dual_stack", "connect_tcp", "runtime",
]  # fmt: skip

#: The driver's name on the command line and in the contract suite.
NAME: Final = "native"

#: The driver object the contract suite and the command line use.
DRIVER: Final = ModuleDriver(NAME, UdpSocket, TcpListener, TcpStream, Runtime)

bind_udp = DRIVER.bind_udp
bind_udp_dual_stack = DRIVER.bind_udp_dual_stack
bind_tcp = DRIVER.bind_tcp
connect_tcp = DRIVER.connect_tcp


def runtime(config: NetConfig | None = None, *, edge_triggered: bool = False) -> Runtime:
    """A new epoll Runtime (level-triggered unless ``edge_triggered``).

    Example:
        >>> from horizon_drivers import native
        >>> with native.runtime(edge_triggered=True) as rt:
        ...     rt.edge_triggered, rt.poll_once(0)
        (True, [])
    """
    return Runtime(config, edge_triggered=edge_triggered)
