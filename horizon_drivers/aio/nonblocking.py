"""What every anyio socket of this driver is: a configured nonblocking socket and its one wait loop.

Rules this module obeys:

* A :class:`NonblockingSocket` owns one nonblocking ``socket.socket``, the
  :class:`~horizon_core.options.OptionReport` it was opened with and its NetConfig; anyio's
  ``extra()`` gets both as :class:`~horizon_drivers.aio.attributes.HorizonAttribute` entries.
* ``aclose()`` is idempotent and wakes every task waiting on the socket (``notify_closing``)
  before the descriptor number can be reused; a waiting task then gets ``ClosedResourceError``.
* Every kernel call goes through :meth:`NonblockingSocket._when_ready`: try the call, wait for
  readiness on ``BlockingIOError``, try again. Its only await comes before the call succeeds,
  so a cancelled operation has taken or sent nothing (:mod:`horizon_drivers.aio.checkpoints`).
* ``NetConfig.spin_budget`` (microseconds) makes a receive that would wait poll first: for that
  long it retries at every pass of the event loop (a checkpoint between tries, so other tasks and
  callbacks keep running and the loop polls without sleeping), and only then waits for
  readiness. A wake-up from a sleeping poll costs microseconds that a spinning receive does not
  pay, at the price of a busy CPU while it spins, as with the native runtime's spin. Sends never
  spin: a full send buffer drains at the peer's pace.
* A kernel error becomes anyio's ``ClosedResourceError`` (the socket was closed) or
  ``BrokenResourceError`` (anything else), the OSError as its ``__cause__``.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable, Mapping
from time import monotonic_ns
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from anyio import BrokenResourceError, ClosedResourceError

from horizon_core.addresses import SocketAddress
from horizon_core.config import NetConfig
from horizon_core.options import OptionReport
from horizon_drivers.aio.attributes import HorizonAttribute
from horizon_drivers.aio.checkpoints import checkpoint_for_running_loop

__all__ = ["NonblockingSocket"]

_T = TypeVar("_T")

#: How to wait until a socket can go on: ``anyio.wait_readable`` or ``anyio.wait_writable``.
Wait = Callable[[socket.socket], Awaitable[None]]


class NonblockingSocket:
    """Lifecycle, attributes and the wait-and-retry loop of the driver's streams, listeners and UDP."""

    def __init__(self, sock: socket.socket, report: OptionReport, config: NetConfig) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._report = report
        self._config = config
        self._closed = False
        self._checkpoint = checkpoint_for_running_loop()
        self._spin_ns = (config.spin_budget or 0) * 1000

    @property
    def _raw_socket(self) -> socket.socket:
        return self._sock

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """anyio's SocketAttribute entries plus HorizonAttribute.options and .config."""
        attributes = dict(super().extra_attributes)  # type: ignore[misc]
        attributes[HorizonAttribute.options] = lambda: self._report
        attributes[HorizonAttribute.config] = lambda: self._config
        return attributes

    @property
    def options(self) -> OptionReport:
        """What the config asked for and what the kernel did with it.

        Example::

            udp.options["SO_RCVBUF"].effective
        """
        return self._report

    @property
    def config(self) -> NetConfig:
        """The NetConfig this socket was opened (or accepted) with."""
        return self._config

    @property
    def local_address(self) -> SocketAddress:
        """This end's address (with the port the kernel chose for port 0).

        Example::

            udp.local_address.port
        """
        if self._closed:
            raise ClosedResourceError
        return SocketAddress.from_sockaddr(self._sock.getsockname())

    async def aclose(self) -> None:
        """Close; a task waiting on this socket gets ClosedResourceError. Idempotent.

        The port is free when this returns (nothing lingers for UDP).
        """
        if not self._closed:
            self._closed = True
            # notify_closing wakes waiters before the descriptor number can be reused.
            try:
                self._notify_closing()
            finally:
                self._close_socket()
        await anyio.lowlevel.checkpoint()

    def _notify_closing(self) -> None:
        anyio.notify_closing(self._sock)

    def _close_socket(self) -> None:
        self._sock.close()

    def _translate(self, exc: OSError) -> Exception:
        if self._closed or exc.errno == errno.EBADF:
            return ClosedResourceError()
        return BrokenResourceError(f"{exc.strerror or exc}")

    async def _spin_step(self, until: int) -> int:
        """One step of a spinning receive (module docstring); ``until`` is 0 on the first.

        Takes a checkpoint and returns the spin's end (``monotonic_ns``) while the budget lasts;
        returns -1 without waiting once it is spent: the caller then waits for readiness.
        """
        now = monotonic_ns()
        if not until:
            until = now + self._spin_ns
        elif now >= until:
            return -1
        await self._checkpoint()
        return until

    async def _when_ready(
        self,
        attempt: Callable[[], _T],
        wait: Wait,
        retry: frozenset[int] = frozenset(),
        *,
        spin: bool = False,
    ) -> _T:
        """``attempt()``'s result, waiting with ``wait`` while it would block.

        Errors whose errno is in ``retry`` are tried again at once; others are translated.
        ``spin`` (receives): poll for ``spin_budget`` before the first wait.
        """
        sock = self._sock
        spinning = 0 if spin and self._spin_ns else -1
        while True:
            if self._closed:
                raise ClosedResourceError
            try:
                return attempt()
            except BlockingIOError:
                if spinning >= 0 and (spinning := await self._spin_step(spinning)) > 0:
                    continue
                await wait(sock)
            except OSError as exc:
                if exc.errno in retry:
                    continue
                raise self._translate(exc) from exc
