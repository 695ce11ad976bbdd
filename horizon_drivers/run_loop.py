"""The run loop every sync Runtime shares: ``run(handler)`` until ``stop()`` or ``close()``.

Rules this module obeys:

* ``run`` on a closed runtime raises :class:`~horizon_core.errors.SocketClosedError`; a runtime
  closed while running (by a handler or another thread) ends the run quietly.
* ``stop()`` makes the running ``run`` return after its current step, from any thread. A
  ``stop()`` that comes before ``run`` makes the next ``run`` return at once; the request is
  consumed when ``run`` returns. ``stop()`` on a closed runtime does nothing: there is no run
  left to stop, and a shutdown path may call ``stop`` and ``close`` in either order.
* An event whose token a handler deregistered earlier in the same step is not delivered.

A driver's Runtime holds one :class:`RunLoop` and forwards ``run`` and ``stop`` to it; the
Runtime brings ``poll_once``, ``wake``, ``closed`` and ``token in runtime``.

Example:
    >>> from horizon_drivers import portable
    >>> with portable.runtime() as rt:
    ...     rt.stop()                  # before run: the next run returns at once
    ...     rt.run(print)
    >>> rt.stop()                      # closed: nothing to stop
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol

from horizon_core.errors import SocketClosedError
from horizon_core.events import Event

__all__ = ["RunLoop", "Steppable"]


class Steppable(Protocol):
    """What the loop needs of a Runtime."""

    @property
    def closed(self) -> bool: ...

    def poll_once(self, timeout: float | None = None) -> list[Event]: ...

    def wake(self) -> None: ...

    def __contains__(self, token: object) -> bool: ...


class RunLoop:
    """The stop request of one Runtime, and the loop that honours it.

    Example:
        >>> from horizon_drivers import sim
        >>> loop = RunLoop()
        >>> with sim.SimNetwork(seed=1).add_host("10.0.0.1").runtime() as rt:
        ...     loop.stop(rt)
        ...     loop.run(rt, print, 0.0)
    """

    __slots__ = ("_stop_requested",)

    def __init__(self) -> None:
        self._stop_requested = False

    def run(
        self, runtime: Steppable, handler: Callable[[Event], object], timeout: float | None
    ) -> None:
        """Call ``handler(event)`` for each event of ``runtime`` until stopped or closed."""
        if runtime.closed:
            self._stop_requested = False
            raise SocketClosedError("runtime", "run")
        try:
            while not self._stop_requested and not runtime.closed:
                for event in runtime.poll_once(timeout):
                    if runtime.closed:
                        break
                    if event.token in runtime:
                        handler(event)
        finally:
            self._stop_requested = False

    def stop(self, runtime: Steppable) -> None:
        """Ask the running (or next) ``run`` to return; wake ``runtime`` if it is blocked."""
        self._stop_requested = True
        # Closed since: close() already ended any run, so there is nothing to wake.
        with contextlib.suppress(SocketClosedError):
            runtime.wake()
