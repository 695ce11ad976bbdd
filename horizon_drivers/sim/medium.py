"""What every simulated host and socket shares: a virtual clock, one seeded scheduler, the ledger.

Rules this module obeys:

* Time is virtual. ``net.now`` only moves when someone calls :meth:`SimMedium.advance`,
  :meth:`SimMedium.run_until_idle` or a runtime's ``poll_once`` with a timeout; nothing ever
  sleeps for real.
* Everything that will happen later (a datagram arriving, a TCP segment, an ICMP error, a user
  timer) is one entry in one heap ordered by ``(time, sequence)``: equal times run in the order
  they were scheduled. Work due *now* (a zero-latency datagram) runs before the call that caused
  it returns, so with ``FaultPlan.none()`` a datagram is readable as soon as ``send_to`` returns.
* Every random decision is drawn from the network's single ``random.Random(seed)``, in the order
  the calls happen, so the whole run (and its :attr:`SimMedium.trace`) replays from the seed.
* Every datagram and TCP byte is accounted in :attr:`SimMedium.ledger`.
* Nothing here knows hosts or sockets: they hold the medium, never the other way round.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable

from horizon_core.errors import HorizonError
from horizon_core.faults import FaultPlan
from horizon_drivers.sim.ledger import Ledger, TraceEntry

__all__ = ["SimDeadlockError", "SimMedium"]


class SimDeadlockError(HorizonError, RuntimeError):
    """A wait without a timeout could never end: nothing is ready and nothing is scheduled.

    A real driver would block for ever here; the simulation says so instead.
    """


def _check_seconds(name: str, value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


class SimMedium:
    """The clock, scheduler, random source, faults, ledger and trace of one simulated network.

    Hosts and sockets hold the medium; :class:`~horizon_drivers.sim.network.SimNetwork` is the
    medium plus its hosts.

    Example:
        >>> medium = SimMedium(seed=2)
        >>> medium.call_later(0.5, lambda: None)
        >>> medium.run_until_idle(), medium.now
        (True, 0.5)
    """

    def __init__(self, seed: int = 0, faults: FaultPlan | None = None, *, trace: bool = True) -> None:
        if type(seed) is not int:
            raise TypeError(f"seed must be an int, got {seed!r}")
        if faults is not None and not isinstance(faults, FaultPlan):
            raise TypeError(f"faults must be a FaultPlan or None, got {faults!r}")
        self._seed = seed
        self._rng = random.Random(seed)
        self._faults = faults if faults is not None else FaultPlan.none()
        self._now = 0.0
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._settling = False
        self._trace_enabled = trace
        #: Everything that happened, in order (empty when built with ``trace=False``).
        self.trace: list[TraceEntry] = []
        #: Exact accounting of every datagram and TCP byte.
        self.ledger = Ledger()
        # Datagram ids currently scheduled to arrive, and TCP bytes in scheduled segments:
        # the wire's own view, compared with the ledger by check_invariants.
        self.wire_datagrams: set[int] = set()
        self.wire_tcp_bytes = 0

    # -- configuration ---------------------------------------------------------------------

    @property
    def seed(self) -> int:
        """The seed the run replays from."""
        return self._seed

    @property
    def faults(self) -> FaultPlan:
        """The fault plan in force; assign a new one to change faults mid-run."""
        return self._faults

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        if not isinstance(plan, FaultPlan):
            raise TypeError(f"faults must be a FaultPlan, got {plan!r}")
        self._faults = plan

    @property
    def rng(self) -> random.Random:
        """The network's random source. Protocol code under test may draw from it too (its
        draws then interleave deterministically with the network's)."""
        return self._rng

    # -- the clock ---------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """Virtual seconds since the network was created."""
        return self._now

    def next_event_time(self) -> float | None:
        """When the next scheduled thing happens, or None if nothing is scheduled."""
        return self._heap[0][0] if self._heap else None

    @property
    def pending_events(self) -> int:
        """How many things are scheduled."""
        return len(self._heap)

    def call_later(self, delay: float, callback: Callable[[], object]) -> None:
        """Run ``callback()`` when the clock reaches ``now + delay`` (a virtual timer).

        Example:
            >>> net = SimMedium()
            >>> fired = []
            >>> net.call_later(1.5, lambda: fired.append(net.now))
            >>> net.advance(2.0); fired
            [1.5]
        """
        seconds = _check_seconds("delay", delay)

        def fire() -> None:
            callback()

        self.schedule_at(self._now + seconds, fire)

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``, running everything due on the way."""
        step = _check_seconds("seconds", seconds)
        self.run_to(self._now + step)

    def run_until_idle(self, max_time: float | None = None) -> bool:
        """Run scheduled work until nothing is left; return True if the network went idle.

        ``max_time`` bounds the virtual seconds to run (from now); if work is still scheduled
        past it, the clock stops at ``now + max_time`` and False is returned.

        Example:
            >>> net = SimMedium()
            >>> net.call_later(3.0, lambda: None)
            >>> net.run_until_idle(max_time=1.0), net.now
            (False, 1.0)
            >>> net.run_until_idle(), net.now
            (True, 3.0)
        """
        limit = math.inf if max_time is None else self._now + _check_seconds("max_time", max_time)
        while self._heap and self._heap[0][0] <= limit:
            self.run_to(self._heap[0][0])
        if self._heap:
            self.run_to(limit)
            return False
        return True

    # -- scheduling (drivers) ---------------------------------------------------------------

    def schedule_at(self, when: float, action: Callable[[], None]) -> None:
        """Schedule ``action`` at virtual time ``when`` (never earlier than now)."""
        heapq.heappush(self._heap, (max(when, self._now), next(self._sequence), action))

    def run_to(self, when: float) -> None:
        """Run everything due up to ``when`` in order, then set the clock to ``when``."""
        if self._settling:
            # Re-entered from an action (a user timer that sends): the outer loop runs the rest.
            return
        self._settling = True
        try:
            while self._heap and self._heap[0][0] <= when:
                at, _, action = heapq.heappop(self._heap)
                self._now = max(self._now, at)
                action()
            self._now = max(self._now, when)
        finally:
            self._settling = False

    def settle(self) -> None:
        """Run everything due now (zero-delay deliveries)."""
        self.run_to(self._now)

    def record(
        self,
        event: str,
        subject: int,
        source: object,
        destination: object,
        size: int,
        note: str = "",
    ) -> None:
        """Append to the trace (drivers)."""
        if self._trace_enabled:
            self.trace.append(
                TraceEntry(self._now, event, subject, str(source), str(destination), size, note)
            )
