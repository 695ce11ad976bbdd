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
    >>> rt = iocp.runtime()
    >>> server, client = iocp.bind_udp("127.0.0.1:0"), iocp.bind_udp("127.0.0.1:0")
    >>> token = rt.register(server, Interest.READABLE)
    >>> client.send_batch([(b"ping", server.local_address)] * 3)
    3
    >>> while server.queued < 3:  # completions land in the server's receive ring
    ...     ready = rt.poll_once(5.0)
    >>> batch = BufferPool(16, 2048).batch(16)
    >>> server.recv_batch(batch)
    3
    >>> batch.release(); client.close(); server.close(); rt.close()

Each UDP socket keeps its receive ring posted (``DEFAULT_RING_SLOTS`` receives in flight):

    >>> with iocp.bind_udp("127.0.0.1:0") as sock:
    ...     sock.pending_receives == iocp.DEFAULT_RING_SLOTS
    True
"""

from __future__ import annotations

import sys
from typing import Final

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
    "DEFAULT_RING_SLOTS", "DEFAULT_RING_SLOT_SIZE", "DRIVER", "NAME", "STREAM_BUFFER", "Runtime",
    "TcpListener", "TcpStream", "UdpSocket", "bind_tcp", "bind_udp", "bind_udp_dual_stack",
    "connect_tcp", "harvest", "runtime", "under_wine",
]  # fmt: skip

#: The driver's name on the command line and in the contract suite.
NAME: Final = "iocp"


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


#: The driver object the contract suite and the command line use.
DRIVER: Final = ModuleDriver(NAME, UdpSocket, TcpListener, TcpStream, Runtime)

# The factory functions are DRIVER's methods, documented in horizon_drivers.module_driver.
bind_udp = DRIVER.bind_udp
bind_udp_dual_stack = DRIVER.bind_udp_dual_stack
bind_tcp = DRIVER.bind_tcp
connect_tcp = DRIVER.connect_tcp
runtime = DRIVER.runtime
