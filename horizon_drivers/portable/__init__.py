"""The portable driver: the sync contract on the standard library's ``selectors`` and ``socket``.

It runs everywhere CPython does (epoll on Linux, kqueue on macOS and the BSDs, select on Windows)
and is the reference every other driver is compared with in ``tests/contract``. Sockets are opened
and configured by the shared :mod:`horizon_drivers.opening`; this package only moves bytes.

What it cannot do, by platform: the true length of a truncated datagram needs Linux's MSG_TRUNC or
a 64 KiB bounce buffer (see :data:`TRUNCATION_MODE`); ``selectors`` never reports ERROR or HANGUP
readiness separately (a pending error shows as READABLE, the next call raises it); Windows has no
``sendmsg``, so ``send_vectored`` sends buffer by buffer there.

Example:
    >>> from horizon_core import BufferPool, Interest, NetConfig
    >>> from horizon_drivers import portable
    >>> with portable.bind_udp("127.0.0.1:0", NetConfig()) as sock, portable.runtime() as rt:
    ...     _ = rt.register(sock, Interest.READABLE)
    ...     _ = sock.send_to(b"to myself", sock.local_address)
    ...     _ = rt.poll_once(1.0)
    ...     batch = BufferPool(4, 2048).batch(4)
    ...     sock.recv_batch(batch), bytes(batch.payload(0))
    (1, b'to myself')
"""

from __future__ import annotations

from horizon_drivers.portable.driver import DRIVER, NAME, PortableDriver
from horizon_drivers.portable.loop import Runtime
from horizon_drivers.portable.tcp import TcpListener, TcpStream
from horizon_drivers.portable.udp import TRUNCATION_MODE, TruncationMode, UdpSocket

__all__ = [
    "DRIVER",
    "NAME",
    "TRUNCATION_MODE",
    "PortableDriver",
    "Runtime",
    "TcpListener",
    "TcpStream",
    "TruncationMode",
    "UdpSocket",
    "bind_tcp",
    "bind_udp",
    "bind_udp_dual_stack",
    "connect_tcp",
    "runtime",
]

bind_udp = DRIVER.bind_udp
bind_udp_dual_stack = DRIVER.bind_udp_dual_stack
bind_tcp = DRIVER.bind_tcp
connect_tcp = DRIVER.connect_tcp
runtime = DRIVER.runtime
