"""Exact accounting of everything the simulated network carries.

Rules this module obeys:

* Every datagram put on the wire gets an id and a state, and moves only through the transitions
  in :data:`DATAGRAM_TRANSITIONS`::

      (sent)    -> IN_FLIGHT          on the wire, not yet at the destination host
      IN_FLIGHT -> QUEUED             admitted to a socket's receive buffer
      QUEUED    -> DELIVERED          read by the application
      IN_FLIGHT -> DROPPED (reason)   lost, refused, no socket, receive buffer full
      QUEUED    -> DROPPED (reason)   the receiving socket closed with it unread

  So at every instant ``sent == delivered + dropped + in_flight + queued``. A duplicate made by
  the network is a send of its own (and is also counted in ``duplicates``).
* TCP is accounted in bytes: ``written == read + in_flight + buffered + discarded``, where
  written bytes are those a ``send`` accepted, buffered bytes wait in a receive buffer, and
  discarded bytes were thrown away by a close or a reset.
* The ledger is only updated by the network, one transition per call, and :meth:`Ledger.check`
  re-derives every counter from the live records.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import NamedTuple

import attrs

from horizon_core.errors import HorizonError

__all__ = [
    "DATAGRAM_TRANSITIONS",
    "AccountingError",
    "DatagramEvent",
    "DatagramState",
    "DropReason",
    "Ledger",
    "TraceEntry",
]


class AccountingError(HorizonError, RuntimeError):
    """The ledger and the network disagree: a datagram or a TCP byte was invented or lost."""


class DatagramState(enum.StrEnum):
    """Where a datagram is."""

    IN_FLIGHT = "in flight"
    QUEUED = "queued"
    DELIVERED = "delivered"
    DROPPED = "dropped"


class DatagramEvent(enum.StrEnum):
    """What can happen to a datagram after it is sent."""

    ARRIVE = "arrive"
    READ = "read"
    DROP = "drop"


#: The datagram lifecycle: (state, event) -> next state. Anything absent is a bug in the sim.
DATAGRAM_TRANSITIONS: Mapping[tuple[DatagramState, DatagramEvent], DatagramState] = {
    (DatagramState.IN_FLIGHT, DatagramEvent.ARRIVE): DatagramState.QUEUED,
    (DatagramState.IN_FLIGHT, DatagramEvent.DROP): DatagramState.DROPPED,
    (DatagramState.QUEUED, DatagramEvent.READ): DatagramState.DELIVERED,
    (DatagramState.QUEUED, DatagramEvent.DROP): DatagramState.DROPPED,
}


class DropReason(enum.StrEnum):
    """Why a datagram never reached the application."""

    LOSS = "loss"
    #: The network answered with ICMP port-unreachable by chance (FaultPlan.port_unreachable).
    PORT_UNREACHABLE = "port unreachable"
    #: Nothing was bound to the destination port (ICMP port-unreachable goes back).
    NO_SUCH_PORT = "no such port"
    #: No host of the network has the destination address.
    NO_SUCH_HOST = "no such host"
    #: The receiving socket's receive buffer (config.recv_buf bytes) had no room (SO_RXQ_OVFL).
    RECEIVE_BUFFER_FULL = "receive buffer full"
    #: The receiving socket closed with the datagram still queued.
    SOCKET_CLOSED = "socket closed"


class TraceEntry(NamedTuple):
    """One thing that happened, at a virtual time. Two runs from one seed give equal traces."""

    time: float
    event: str
    subject: int
    source: str
    destination: str
    size: int
    note: str = ""


def _check_sum(problems: list[str], total: tuple[str, int], *parts: tuple[str, int]) -> None:
    """Report ``total != sum of parts`` in ``problems``, every counter named with its value."""
    if sum(value for _, value in parts) != total[1]:
        terms = " + ".join(f"{name} {value}" for name, value in parts)
        problems.append(f"{total[0]} {total[1]} != {terms}")


@attrs.define(slots=True)
class _Record:
    state: DatagramState
    size: int


@attrs.define(slots=True, kw_only=True)
class Ledger:
    """Counters of datagrams and TCP bytes, plus the live datagrams (in flight or queued).

    Example:
        >>> ledger = Ledger()
        >>> d = ledger.datagram_sent(100)
        >>> ledger.datagram_moved(d, DatagramEvent.ARRIVE)
        >>> ledger.datagram_moved(d, DatagramEvent.READ)
        >>> ledger.datagrams_delivered, ledger.datagrams_in_flight
        (1, 0)
        >>> ledger.check()
    """

    datagrams_sent: int = 0
    duplicates: int = 0
    datagrams_in_flight: int = 0
    datagrams_queued: int = 0
    datagrams_delivered: int = 0
    dropped: dict[DropReason, int] = attrs.field(factory=dict)
    #: Delivered shorter than sent because the network cut them (FaultPlan.truncation).
    truncated_in_network: int = 0
    #: Read into a slot or buffer shorter than the datagram (flagged, like MSG_TRUNC).
    truncated_on_receive: int = 0
    icmp_errors: int = 0

    tcp_bytes_written: int = 0
    tcp_bytes_in_flight: int = 0
    tcp_bytes_buffered: int = 0
    tcp_bytes_read: int = 0
    tcp_bytes_discarded: int = 0
    tcp_connections: int = 0
    tcp_refused: int = 0
    tcp_resets: int = 0

    _live: dict[int, _Record] = attrs.field(factory=dict, alias="_live", repr=False)
    _next_id: int = attrs.field(default=1, alias="_next_id", repr=False)

    @property
    def datagrams_dropped(self) -> int:
        """All drops, whatever the reason."""
        return sum(self.dropped.values())

    def live(self) -> dict[int, DatagramState]:
        """The datagrams still in flight or queued: id -> state."""
        return {ident: record.state for ident, record in self._live.items()}

    # -- datagram transitions --------------------------------------------------------------

    def datagram_sent(self, size: int, *, duplicate: bool = False) -> int:
        """Record a datagram put on the wire; return its id. It starts IN_FLIGHT."""
        ident = self._next_id
        self._next_id += 1
        self.datagrams_sent += 1
        if duplicate:
            self.duplicates += 1
        self.datagrams_in_flight += 1
        self._live[ident] = _Record(DatagramState.IN_FLIGHT, size)
        return ident

    def datagram_moved(
        self,
        ident: int,
        event: DatagramEvent,
        reason: DropReason | None = None,
        *,
        truncated: bool = False,
    ) -> None:
        """Apply one transition of :data:`DATAGRAM_TRANSITIONS` to datagram ``ident``."""
        record = self._live.get(ident)
        if record is None:
            raise AccountingError(f"datagram #{ident} is not in flight or queued ({event})")
        target = DATAGRAM_TRANSITIONS.get((record.state, event))
        if target is None:
            raise AccountingError(f"datagram #{ident} cannot {event} from {record.state}")
        if (event is DatagramEvent.DROP) != (reason is not None):
            raise AccountingError(f"datagram #{ident}: a drop needs a reason, nothing else does")
        self._count(record.state, -1)
        if target is DatagramState.QUEUED:
            record.state = target
            self._count(target, +1)
            return
        del self._live[ident]
        if target is DatagramState.DELIVERED:
            self.datagrams_delivered += 1
            if truncated:
                self.truncated_on_receive += 1
        else:
            assert reason is not None
            self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def _count(self, state: DatagramState, delta: int) -> None:
        if state is DatagramState.IN_FLIGHT:
            self.datagrams_in_flight += delta
        else:
            self.datagrams_queued += delta

    # -- TCP byte moves ----------------------------------------------------------------------

    def tcp_written(self, nbytes: int) -> None:
        """A send accepted ``nbytes``: they are in flight."""
        self.tcp_bytes_written += nbytes
        self.tcp_bytes_in_flight += nbytes

    def tcp_arrived(self, nbytes: int) -> None:
        """In-flight bytes reached a receive buffer."""
        self.tcp_bytes_in_flight -= nbytes
        self.tcp_bytes_buffered += nbytes

    def tcp_read(self, nbytes: int) -> None:
        """The application read buffered bytes."""
        self.tcp_bytes_buffered -= nbytes
        self.tcp_bytes_read += nbytes

    def tcp_discarded(self, nbytes: int, *, buffered: bool) -> None:
        """Bytes thrown away: unread at close (``buffered``) or arriving at a closed end."""
        if buffered:
            self.tcp_bytes_buffered -= nbytes
        else:
            self.tcp_bytes_in_flight -= nbytes
        self.tcp_bytes_discarded += nbytes

    # -- checks ----------------------------------------------------------------------------

    def check(self) -> None:
        """Raise AccountingError unless every counter agrees with the live records.

        Example:
            >>> Ledger().check()
        """
        problems: list[str] = []
        in_flight = sum(1 for r in self._live.values() if r.state is DatagramState.IN_FLIGHT)
        queued = len(self._live) - in_flight
        if in_flight != self.datagrams_in_flight:
            problems.append(f"in flight {self.datagrams_in_flight} but {in_flight} live")
        if queued != self.datagrams_queued:
            problems.append(f"queued {self.datagrams_queued} but {queued} live")
        _check_sum(
            problems,
            ("sent", self.datagrams_sent),
            ("delivered", self.datagrams_delivered),
            ("dropped", self.datagrams_dropped),
            ("in flight", self.datagrams_in_flight),
            ("queued", self.datagrams_queued),
        )
        if self.datagrams_sent != self._next_id - 1:
            problems.append(f"sent {self.datagrams_sent} but {self._next_id - 1} ids issued")
        if not 0 <= self.duplicates <= self.datagrams_sent:
            problems.append(f"duplicates {self.duplicates} out of range")
        if not 0 <= self.truncated_on_receive <= self.datagrams_delivered:
            problems.append(f"truncated on receive {self.truncated_on_receive} out of range")
        _check_sum(
            problems,
            ("TCP written", self.tcp_bytes_written),
            ("read", self.tcp_bytes_read),
            ("in flight", self.tcp_bytes_in_flight),
            ("buffered", self.tcp_bytes_buffered),
            ("discarded", self.tcp_bytes_discarded),
        )
        negative = [
            name
            for name in ("tcp_bytes_in_flight", "tcp_bytes_buffered", "datagrams_in_flight")
            if getattr(self, name) < 0
        ]
        problems.extend(f"{name} is negative" for name in negative)
        if problems:
            raise AccountingError("ledger broken: " + "; ".join(problems))

    def to_dict(self) -> dict[str, object]:
        """The counters as a JSON-ready dict (drop reasons by their text).

        Example:
            >>> Ledger().to_dict()["datagrams_sent"]
            0
        """
        result: dict[str, object] = {
            field.name: getattr(self, field.name)
            for field in attrs.fields(Ledger)
            if not field.name.startswith("_") and field.name != "dropped"
        }
        result["dropped"] = {str(reason): count for reason, count in sorted(self.dropped.items())}
        return result
