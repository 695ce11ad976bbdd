"""How a TCP stream waits for its socket, as cheaply as the running backend allows.

Rules this module obeys:

* One :class:`Readiness` per stream, chosen when the stream is created (anyio objects belong to
  the event loop that made them): :class:`LoopReadiness` on asyncio selector loops and uvloop,
  :class:`TrioReadiness` on trio, :class:`AnyioReadiness` (anyio's ``wait_readable``) elsewhere.
* On asyncio and uvloop the stream's reader stays registered with the loop between waits: the
  first wait adds it (``loop.add_reader``), later waits only await a future, so a stream that
  waits for every message costs no ``epoll_ctl`` per wait. (anyio's ``wait_readable`` adds and
  removes a reader per wait: ``epoll_ctl`` ADD and DEL each time.) A level-triggered reader that
  fires while nobody waits would wake the loop at every iteration, so the reader is removed after
  :data:`IDLE_WAKES` such wakes in a row; the next wait adds it again.
* Writes wait one-shot (add, wake, remove): a writable socket is the normal case, a persistent
  writer would fire at every loop iteration.
* On trio, ``trio.lowlevel.wait_readable`` already costs one ``epoll_ctl`` per wait (EPOLLONESHOT
  re-armed with MOD); it is called directly, without anyio's backend dispatch.
* ``close()`` unregisters everything and wakes a waiting task with ``ClosedResourceError``; it must
  run before the socket is closed, so the loop never watches a descriptor number that may be
  reused. The stream owns the loop's registration of its descriptor: code that calls
  ``anyio.wait_readable`` or ``loop.add_reader`` on the stream's raw socket while the stream is open
  takes it over (as it would from an asyncio transport).
* A cancelled wait has taken nothing from the kernel; the registration stays and the next wait
  reuses it.
* ``raises_when_cancelled`` says whether a wait begun in an already cancelled scope always raises,
  even when the socket is readable at once. It holds on trio (the wait is trio's checkpoint) and
  on asyncio's selector loop, where anyio's cancellation delivery (re-scheduled with
  ``call_soon`` at every iteration while the scope has tasks) always runs before the reader
  callbacks of the next select. It does not hold on uvloop, whose reader callbacks run in the poll
  phase, after that iteration's ready callbacks: there a wait can complete before the delivery
  reaches it, and the stream asks anyio whether its scope is cancelled (which costs about as much
  as the rest of a wake-up, so it is asked only there).

Example::

    readiness = readiness_for_running_loop(sock)
    await readiness.wait_readable()     # ClosedResourceError if close() ran meanwhile
    readiness.close()
    sock.close()
"""

from __future__ import annotations

import asyncio
import importlib
import socket
from typing import Any, Final, Protocol

import anyio
from anyio import ClosedResourceError

__all__ = [
    "IDLE_WAKES",
    "AnyioReadiness",
    "LoopReadiness",
    "Readiness",
    "TrioReadiness",
    "readiness_for_running_loop",
]

#: Wakes of a persistent reader with no task waiting after which it is removed from the loop.
IDLE_WAKES: Final = 2


class Readiness(Protocol):
    """Waiting for one socket to be readable or writable, and waking those waits on close."""

    @property
    def raises_when_cancelled(self) -> bool:
        """Whether a wait in an already cancelled scope always raises (see the module docstring)."""
        ...

    async def wait_readable(self) -> None:
        """Return when the socket may be readable; ClosedResourceError if closed meanwhile."""
        ...

    async def wait_writable(self) -> None:
        """Return when the socket may be writable; ClosedResourceError if closed meanwhile."""
        ...

    def close(self) -> None:
        """Unregister and wake every waiter (with ClosedResourceError); before the socket closes."""
        ...


def _wake(waiter: asyncio.Future[bool], ready: bool) -> None:
    if not waiter.done():
        waiter.set_result(ready)


class LoopReadiness:
    """asyncio and uvloop: a reader registered once per stream, a future per wait.

    Example::

        readiness = LoopReadiness(asyncio.get_running_loop(), sock)
    """

    __slots__ = (
        "_closed",
        "_fd",
        "_idle_wakes",
        "_loop",
        "_read_waiter",
        "_reading",
        "_stale_guard",
        "_stale_possible",
        "_write_waiter",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._loop = loop
        # asyncio's selector loop runs this iteration's event callbacks after the tasks woken in
        # the previous one: a task that read the data, then waited again in this iteration, would
        # be woken by the event its own read already consumed (one wasted recv and iteration).
        # Events until the next select are stale for a waiter set now; a call_soon marks that
        # select (it runs after it, before its events). uvloop runs I/O callbacks inside its poll
        # phase, never after tasks of the same iteration, so it needs no such guard.
        self._stale_guard = isinstance(loop, asyncio.SelectorEventLoop)
        self._stale_possible = False
        self._fd = sock.fileno()
        self._reading = False
        self._idle_wakes = 0
        self._read_waiter: asyncio.Future[bool] | None = None
        self._write_waiter: asyncio.Future[bool] | None = None
        self._closed = False

    @property
    def reading(self) -> bool:
        """Whether the reader is registered with the loop now."""
        return self._reading

    @property
    def raises_when_cancelled(self) -> bool:
        """True on asyncio's selector loop, False on uvloop (module docstring)."""
        return self._stale_guard

    def _fresh_select(self) -> None:
        self._stale_possible = False

    def _on_readable(self) -> None:
        if self._stale_possible:
            return  # selected before the waiter's own read found nothing: not news
        waiter = self._read_waiter
        if waiter is not None:
            self._read_waiter = None
            self._idle_wakes = 0
            if not waiter.done():
                waiter.set_result(True)
            return
        # Nobody waits: readable data (or a stale wake the waiter already consumed). Level-triggered,
        # this fires again at every iteration until someone reads: stop watching after a few.
        self._idle_wakes += 1
        if self._idle_wakes >= IDLE_WAKES:
            self._idle_wakes = 0
            self._reading = False
            self._loop.remove_reader(self._fd)

    async def wait_readable(self) -> None:
        """Await the persistent reader's next wake."""
        if self._closed:
            raise ClosedResourceError
        waiter = self._loop.create_future()
        if not self._reading:
            self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True
        self._idle_wakes = 0
        self._read_waiter = waiter
        if self._stale_guard:
            self._stale_possible = True
            self._loop.call_soon(self._fresh_select)
        try:
            ready = await waiter
        finally:
            if self._read_waiter is waiter:  # cancelled: the reader stays for the next wait
                self._read_waiter = None
        if not ready:
            raise ClosedResourceError

    async def wait_writable(self) -> None:
        """One-shot writer: added, awaited, removed."""
        if self._closed:
            raise ClosedResourceError
        loop = self._loop
        waiter = loop.create_future()
        loop.add_writer(self._fd, _wake, waiter, True)
        self._write_waiter = waiter
        try:
            ready = await waiter
        finally:
            if self._write_waiter is waiter:
                self._write_waiter = None
                loop.remove_writer(self._fd)
        if not ready:
            raise ClosedResourceError

    def close(self) -> None:
        """Remove reader and writer, wake their waiters with ClosedResourceError. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)
        reader, self._read_waiter = self._read_waiter, None
        writer, self._write_waiter = self._write_waiter, None
        if writer is not None:
            self._loop.remove_writer(self._fd)
        for waiter in (reader, writer):
            if waiter is not None:
                _wake(waiter, False)


class TrioReadiness:
    """trio: ``trio.lowlevel.wait_readable`` and friends, without anyio's dispatch.

    Example::

        readiness = TrioReadiness(sock)
    """

    __slots__ = ("_closed_error", "_notify_closing", "_sock", "_wait_readable", "_wait_writable")

    #: trio's wait is a checkpoint: a cancelled scope raises there.
    raises_when_cancelled: Final = True

    def __init__(self, sock: socket.socket) -> None:
        # Imported by name: trio is optional, and older releases ship no type information.
        trio: Any = importlib.import_module("trio")
        self._sock = sock
        self._wait_readable = trio.lowlevel.wait_readable
        self._wait_writable = trio.lowlevel.wait_writable
        self._notify_closing = trio.lowlevel.notify_closing
        self._closed_error: type[Exception] = trio.ClosedResourceError

    async def wait_readable(self) -> None:
        """trio's wait; trio's ClosedResourceError (notify_closing woke it) becomes anyio's."""
        try:
            await self._wait_readable(self._sock)
        except self._closed_error:
            raise ClosedResourceError from None

    async def wait_writable(self) -> None:
        """trio's wait for writability; trio's ClosedResourceError becomes anyio's."""
        try:
            await self._wait_writable(self._sock)
        except self._closed_error:
            raise ClosedResourceError from None

    def close(self) -> None:
        """``trio.lowlevel.notify_closing``: waiters get trio's ClosedResourceError (anyio's)."""
        self._notify_closing(self._sock)


class AnyioReadiness:
    """Any other backend: anyio's one-shot waits.

    Example::

        readiness = AnyioReadiness(sock)
    """

    __slots__ = ("_sock",)

    #: Not known for every backend this may run on: the stream asks anyio instead.
    raises_when_cancelled: Final = False

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    async def wait_readable(self) -> None:
        """``anyio.wait_readable``."""
        await anyio.wait_readable(self._sock)

    async def wait_writable(self) -> None:
        """``anyio.wait_writable``."""
        await anyio.wait_writable(self._sock)

    def close(self) -> None:
        """``anyio.notify_closing``."""
        anyio.notify_closing(self._sock)


def _has_add_reader(loop: asyncio.AbstractEventLoop) -> bool:
    # The proactor loop (Windows) has no add_reader; anyio then runs a selector thread.
    proactor = getattr(asyncio, "ProactorEventLoop", None)
    return not (proactor is not None and isinstance(loop, proactor))


def readiness_for_running_loop(sock: socket.socket) -> Readiness:
    """The cheapest correct :class:`Readiness` for ``sock`` on the loop running in this thread.

    Example::

        readiness = readiness_for_running_loop(sock)
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        if _has_add_reader(loop):
            return LoopReadiness(loop, sock)
        return AnyioReadiness(sock)
    try:
        trio_lowlevel = importlib.import_module("trio.lowlevel")
        trio_lowlevel.current_task()
    except (ImportError, RuntimeError):
        return AnyioReadiness(sock)
    return TrioReadiness(sock)
