"""The io_uring driver (``uring``): the sync contract on Linux, completion-based underneath.

Rules this package obeys:

* It imports only on Linux, once the extension is built, and only where io_uring runs: a kernel
  without it, ``kernel.io_uring_disabled`` or a seccomp filter returning EPERM (common in
  containers) makes importing it raise ImportError with the reason, so the registry lists
  ``uring`` as unavailable with that reason, as it does iocp off Windows.
* Same API as :mod:`horizon_drivers.native` (``UdpSocket``, ``TcpListener``, ``TcpStream``,
  ``Runtime``, ``NAME``, ``DRIVER``). UDP receives are a multishot recvmsg on a provided-buffer
  ring made of the socket's receive BufferPool slots; a TCP listener keeps a multishot accept in
  flight and a connected stream a multishot poll, its reads going straight into the caller's
  buffer; reads, sends, connect and shutdown on a stream are the epoll driver's calls, and the
  Runtime watches writability with poll requests. See
  ``horizon_drivers/native/uring/uring.pyx`` for the rules of the compiled module.
* The ring is sized by ``HORIZON_URING_ENTRIES`` (submission queue, 256) and
  ``HORIZON_URING_CQ_ENTRIES`` (completion queue, 8192), read when the first socket or runtime
  is made; a full completion queue loses nothing (the kernel's overflow list is flushed).
  ``HORIZON_URING_SQPOLL=1`` makes it an SQPOLL ring: a kernel thread takes submissions and runs
  the receives, so completions land while Python runs; a receive that finds the queue empty may
  then be followed by datagrams the thread had in hand (they are not lost, only later).
  ``HORIZON_URING_SINGLE_THREAD=1`` makes it a single-issuer ring with deferred task work
  (``IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN``): completions are produced in batches inside
  the owning thread's waits, which costs less CPU per datagram. Only the thread that made the
  ring may poll it or settle a close; ``wake()`` and ``stop()`` still work from any thread.

Example:
    >>> from horizon_core.buffers import BufferPool
    >>> from horizon_core.events import Interest
    >>> from horizon_drivers import uring
    >>> with uring.bind_udp("127.0.0.1:0") as server, uring.bind_udp("127.0.0.1:0") as client:
    ...     with uring.runtime() as rt:
    ...         token = rt.register(server, Interest.READABLE)
    ...         queued = client.send_batch([(b"ping", server.local_address)] * 3)
    ...         while server.queued < 3 and rt.poll_once(5.0):
    ...             pass
    ...         batch = BufferPool(16, 2048).batch(16)
    ...         received = server.recv_batch(batch)
    ...         echoed = server.send_batch(batch)
    ...         batch.release()
    >>> queued, received, echoed
    (3, 3, 3)
"""

from __future__ import annotations

import sys
from typing import Final

from horizon_drivers.module_driver import ModuleDriver

# A plain variable, not sys.platform itself: type checkers elsewhere must still see the rest.
_PLATFORM: str = sys.platform
if not _PLATFORM.startswith("linux"):
    raise ImportError(f"horizon_drivers.uring is the Linux io_uring driver; this is {_PLATFORM!r}")

try:
    from horizon_drivers.native.uring.uring import (
        ACCEPT_QUEUE,
        CLOSE_SETTLE_SECONDS,
        DEFAULT_RING_PAYLOAD,
        DEFAULT_RING_SLOTS,
        USED_FEATURES,
        Runtime,
        TcpListener,
        TcpStream,
        UdpSocket,
        probe,
        ring_stats,
        unavailable_reason,
    )
except ModuleNotFoundError:  # pragma: no cover - depends on the build
    raise
except ImportError as exc:  # pragma: no cover - depends on the build
    raise ImportError(f"horizon_drivers.uring is not built: run `pip install -e .` ({exc})") from exc

_REASON = unavailable_reason()
if _REASON is not None:
    raise ImportError(_REASON)

__all__ = [
    "ACCEPT_QUEUE", "CLOSE_SETTLE_SECONDS", "DEFAULT_RING_PAYLOAD", "DEFAULT_RING_SLOTS", "DRIVER",
    "NAME", "Runtime", "TcpListener", "TcpStream",
    "USED_FEATURES", "UdpSocket", "bind_tcp", "bind_udp", "bind_udp_dual_stack", "connect_tcp",
    "probe", "ring_stats", "runtime",
]  # fmt: skip

#: The driver's name on the command line and in the contract suite.
NAME: Final = "uring"

#: The driver object the contract suite and the command line use.
DRIVER: Final = ModuleDriver(NAME, UdpSocket, TcpListener, TcpStream, Runtime)

# The factory functions are DRIVER's methods, documented in horizon_drivers.module_driver.
bind_udp = DRIVER.bind_udp
bind_udp_dual_stack = DRIVER.bind_udp_dual_stack
bind_tcp = DRIVER.bind_tcp
connect_tcp = DRIVER.connect_tcp
runtime = DRIVER.runtime
