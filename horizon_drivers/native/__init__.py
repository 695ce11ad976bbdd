"""The Linux native driver: Cython over epoll, recvmmsg/sendmmsg and accept4.

Rules this package obeys:

* Its names exist only on Linux, once the extension modules are built; importing it unbuilt raises
  ImportError saying why, and off Linux each name raises ImportError saying why (the package still
  imports there, because ``native.windows`` holds the Windows driver's extension). The portable
  driver works everywhere.
* The compiled parts live in ``native/linux/`` (one module per concern); this module re-exports
  the driver's names (the ``__all__`` of ``native/linux/driver.py``).
* Sockets come from :mod:`horizon_drivers.opening` (the core's option plan, applied and read
  back), then a ``cdef class`` takes over the descriptor: it owns it, closes it in ``close()`` or
  when collected, and raises :class:`~horizon_core.errors.SocketClosedError` on any use after.
* The GIL is released around every syscall that can wait or moves 16 KiB or more (a smaller
  nonblocking recv/send keeps it: see ``descriptor.pyx``); EINTR is retried; would-block is
  ``BlockingIOError``.
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

import importlib.util
import sys

if sys.platform.startswith("linux"):
    try:
        # Every name of the driver's __all__ (DRIVER, NAME, MAX_BATCH, the four classes and the
        # factory functions bind_udp, bind_udp_dual_stack, bind_tcp, connect_tcp, runtime).
        from horizon_drivers.native.linux.driver import *  # noqa: F403
        from horizon_drivers.native.linux.driver import __all__
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise ImportError(
            "horizon_drivers.native is not built: run `pip install -e .` or "
            f"`python setup.py build_ext --inplace` in the project root ({exc})"
        ) from exc
else:
    # This package also holds the Windows driver's extension (``native.windows``), so it imports
    # everywhere; off Linux every public name but a submodule's is refused with the reason.
    _UNAVAILABLE = (
        f"horizon_drivers.native is the Linux driver (epoll, recvmmsg/sendmmsg); this is "
        f"{sys.platform!r}. Use horizon_drivers.portable (or aio) here."
    )

    __all__: list[str] = []

    def __getattr__(name: str) -> object:
        # A submodule (``windows``) is no attribute until imported, and the import system asks.
        if name.startswith("_") or importlib.util.find_spec(f"{__name__}.{name}") is not None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        raise ImportError(_UNAVAILABLE)
