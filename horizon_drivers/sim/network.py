"""The simulated network: hosts, a virtual clock, and one seeded scheduler.

Rules this module obeys:

* Time is virtual. ``net.now`` only moves when someone calls :meth:`SimNetwork.advance`,
  :meth:`SimNetwork.run_until_idle` or a runtime's ``poll_once`` with a timeout; nothing ever
  sleeps for real.
* Everything that will happen later (a datagram arriving, a TCP segment, an ICMP error, a user
  timer) is one entry in one heap ordered by ``(time, sequence)``: equal times run in the order
  they were scheduled. Work due *now* (a zero-latency datagram) runs before the call that caused
  it returns, so with ``FaultPlan.none()`` a datagram is readable as soon as ``send_to`` returns.
* Every random decision is drawn from the network's single ``random.Random(seed)``, in the order
  the calls happen, so the whole run (and its :attr:`SimNetwork.trace`) replays from the seed.
* Every datagram and TCP byte is accounted in :attr:`SimNetwork.ledger`;
  :meth:`SimNetwork.check_invariants` cross-checks it against the sockets and the wire.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from horizon_core.addresses import IPAddress
from horizon_core.errors import HorizonError
from horizon_core.faults import FaultPlan
from horizon_drivers.sim.ledger import AccountingError, DatagramState, Ledger, TraceEntry

if TYPE_CHECKING:
    from horizon_drivers.sim.host import SimHost

__all__ = ["SimDeadlockError", "SimNetwork"]


class SimDeadlockError(HorizonError, RuntimeError):
    """A wait without a timeout could never end: nothing is ready and nothing is scheduled.

    A real driver would block for ever here; the simulation says so instead.
    """


def _check_seconds(name: str, value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


class SimNetwork:
    """An in-memory network of hosts with a virtual clock and seeded faults.

    Example:
        >>> from horizon_drivers.sim import SimNetwork
        >>> net = SimNetwork(seed=1)
        >>> a, b = net.add_host("10.0.0.1"), net.add_host("10.0.0.2")
        >>> server = b.bind_udp("10.0.0.2:53")
        >>> client = a.bind_udp("0.0.0.0:0")
        >>> client.send_to(b"ping", "10.0.0.2:53")
        4
        >>> buf = bytearray(16)
        >>> n, sender = server.recv_from(buf)
        >>> bytes(buf[:n]), str(sender.host)
        (b'ping', '10.0.0.1')
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
        self._hosts: list[SimHost] = []
        self._by_address: dict[IPAddress, SimHost] = {}
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

    @property
    def hosts(self) -> tuple[SimHost, ...]:
        """The hosts, in the order they were added."""
        return tuple(self._hosts)

    def add_host(self, *addresses: str | IPAddress, name: str | None = None) -> SimHost:
        """Add a host owning ``addresses`` (IP literals) plus loopback (127.0.0.0/8 and ::1).

        Example:
            >>> net = SimNetwork()
            >>> host = net.add_host("10.0.0.1", "fd00::1")
            >>> [str(a) for a in host.addresses], host.name
            (['10.0.0.1', 'fd00::1'], 'sim')
        """
        from horizon_drivers.sim.host import SimHost

        parsed: list[IPAddress] = []
        for raw in addresses:
            ip = raw if isinstance(raw, IPAddress) else ipaddress.ip_address(raw)
            if ip.is_loopback or ip.is_unspecified or ip.is_multicast:
                raise ValueError(f"{ip} cannot be a host address (loopback is implicit)")
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                raise ValueError(f"{ip} is IPv4-mapped; give the IPv4 address instead")
            if ip in self._by_address or ip in parsed:
                raise ValueError(f"address {ip} is already taken on this network")
            parsed.append(ip)
        label = name if name is not None else f"host{len(self._hosts) + 1}"
        host = SimHost(self, tuple(parsed), label)
        self._hosts.append(host)
        for ip in parsed:
            self._by_address[ip] = host
        return host

    def host_for(self, ip: IPAddress) -> SimHost | None:
        """The host that owns ``ip`` (not loopback), or None."""
        return self._by_address.get(ip)

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
            >>> net = SimNetwork()
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
            >>> net = SimNetwork()
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

    # -- accounting --------------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Raise AccountingError unless the ledger matches the wire and every socket.

        Checks: the ledger's own identities (sent == delivered + dropped + in flight + queued;
        TCP written == read + in flight + buffered + discarded); the datagrams in flight are
        exactly those scheduled to arrive; the datagrams queued are exactly those in receive
        buffers; TCP bytes in flight and buffered match the segments and the stream buffers;
        each receive buffer is within its bound.

        Example:
            >>> SimNetwork().check_invariants()
        """
        ledger = self.ledger
        ledger.check()
        problems: list[str] = []
        live = ledger.live()
        in_flight = {i for i, state in live.items() if state is DatagramState.IN_FLIGHT}
        if in_flight != self.wire_datagrams:
            problems.append(
                f"datagrams in flight {sorted(in_flight)} != on the wire {sorted(self.wire_datagrams)}"
            )
        queued_ids: list[int] = []
        buffered = 0
        for host in self._hosts:
            for sock in host.udp_sockets():
                ids, nbytes, capacity = sock.queue_state()
                queued_ids.extend(ids)
                if nbytes > capacity:
                    problems.append(f"{sock!r} holds {nbytes} bytes, over its {capacity}")
            for stream in host.tcp_streams():
                buffered += stream.buffered_bytes()
        queued = {i for i, state in live.items() if state is DatagramState.QUEUED}
        if len(queued_ids) != len(set(queued_ids)) or set(queued_ids) != queued:
            problems.append(f"queued {sorted(queued)} != in receive buffers {sorted(queued_ids)}")
        if ledger.tcp_bytes_in_flight != self.wire_tcp_bytes:
            problems.append(
                f"TCP in flight {ledger.tcp_bytes_in_flight} != on the wire {self.wire_tcp_bytes}"
            )
        if ledger.tcp_bytes_buffered != buffered:
            problems.append(f"TCP buffered {ledger.tcp_bytes_buffered} != in streams {buffered}")
        if problems:
            raise AccountingError("network broken: " + "; ".join(problems))

    def __repr__(self) -> str:
        return (
            f"<SimNetwork seed={self._seed} now={self._now:g} hosts={len(self._hosts)} "
            f"pending={len(self._heap)}>"
        )
