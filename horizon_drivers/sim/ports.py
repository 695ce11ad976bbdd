"""What a simulated socket takes from its host: address views, port claims and the host interface.

Rules this module obeys:

* Two bindings conflict when their addresses overlap (equal, or either a wildcard; a dual-stack
  ``[::]`` covers every IPv4 address), unless both asked for ``reuse_port`` (SO_REUSEPORT).
  Port 0 takes the next free ephemeral port from 32768..60999 (Linux's ``ip_local_port_range``),
  in order, so runs replay.
* Sockets see their host only through :class:`Node`, so this module, the sockets and the
  network sit below :mod:`horizon_drivers.sim.host`, which builds them all: no import goes back up.
* Options: the sim applies every planned option exactly, so each report says
  ``effective == requested`` (the plan is the core's ``plan_options`` for Linux).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import zlib
from collections.abc import Iterable, Sequence
from typing import Final, Literal, Protocol, TypeVar

import attrs

from horizon_core.addresses import IPAddress, SocketAddress
from horizon_core.config import NetConfig
from horizon_core.options import (
    Family,
    KernelLimits,
    Observation,
    OptionReport,
    OptionStatus,
    Platform,
    SocketKind,
    build_report,
    plan_options,
)
from horizon_drivers.sim.medium import SimMedium

__all__ = [
    "ANY",
    "LOOPBACK",
    "Binding",
    "BufferedStream",
    "Node",
    "PortTable",
    "Proto",
    "QueuedSocket",
    "SimulatedSocket",
    "as_seen_by",
    "buffer_size",
    "flow_hash",
    "oserror",
    "reuseport_choice",
    "simulated_report",
    "view_matches",
    "wire",
]

EPHEMERAL_LOW: Final = 32768
EPHEMERAL_HIGH: Final = 60999
#: Linux's net.core.rmem_default / wmem_default: the buffer a socket gets when the config says None.
DEFAULT_BUFFER: Final = 212992

_APPLIED_REASON: Final = "simulated: effective == requested (the sim applies every option exactly)"

Proto = Literal["udp", "tcp"]

LOOPBACK: Final[dict[int, IPAddress]] = {
    4: ipaddress.IPv4Address("127.0.0.1"),
    6: ipaddress.IPv6Address("::1"),
}


class _Any:
    """The wildcard side of an address view: covers every address of its family."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _Any()
View = IPAddress | _Any | None


def oserror(code: int, detail: str = "") -> OSError:
    """An OSError of the matching subclass (ConnectionRefusedError, BlockingIOError...)."""
    message = os.strerror(code)
    return OSError(code, f"{message} ({detail})" if detail else message)


def views(family: int, host: IPAddress, v6only: bool) -> tuple[View, View]:
    """(IPv4 view, IPv6 view) of a local address: what each family's traffic can reach."""
    if family == 4:
        return (ANY if host.is_unspecified else host), None
    assert isinstance(host, ipaddress.IPv6Address)
    mapped = host.ipv4_mapped
    if mapped is not None:
        return (ANY if mapped.is_unspecified else mapped), None
    if host.is_unspecified:
        return (None if v6only else ANY), ANY
    return None, host


def _overlap(a: View, b: View) -> bool:
    return a is not None and b is not None and (a is ANY or b is ANY or a == b)


def view_matches(view: View, ip: IPAddress) -> bool:
    """True when traffic to ``ip`` reaches a socket whose view (of ip's family) is ``view``."""
    return view is ANY or view == ip


def flow_hash(source: SocketAddress) -> int:
    """SO_REUSEPORT's choice among equals: a stable hash of the sender (never Python's hash,
    which is salted per process and would break replay)."""
    return zlib.crc32(str(source).encode())


_T = TypeVar("_T")


def reuseport_choice(scored: Iterable[tuple[_T, int]], source: SocketAddress) -> _T | None:
    """The receiver of traffic from ``source``: one of the best-scoring candidates (score >= 0).

    Several with the best score form an SO_REUSEPORT group: one is chosen by :func:`flow_hash`.
    None when no candidate scores.

    Example:
        >>> sender = SocketAddress.parse("10.0.0.1:5000")
        >>> reuseport_choice([("wildcard", 0), ("specific", 1), ("closed", -1)], sender)
        'specific'
    """
    best: list[_T] = []
    best_score = -1
    for candidate, score in scored:
        if score > best_score:
            best, best_score = [candidate], score
        elif score == best_score and score >= 0:
            best.append(candidate)
    if not best:
        return None
    return best[flow_hash(source) % len(best)] if len(best) > 1 else best[0]


def simulated_report(config: NetConfig, family: int, kind: SocketKind) -> OptionReport:
    """The OptionReport of a sim socket: every planned Linux option applied exactly."""
    plan = plan_options(config, Family(family), kind, Platform.LINUX)
    observed = {s.name: Observation(s.name, effective=s.value) for s in plan.settings}
    report = build_report(plan, observed, KernelLimits())
    outcomes = tuple(
        attrs.evolve(o, effective=o.requested, reason=_APPLIED_REASON)
        if o.status is OptionStatus.APPLIED
        else o
        for o in report.outcomes
    )
    return OptionReport(outcomes)


def buffer_size(value: int | None) -> int:
    """A configured buffer in bytes (None: the Linux default)."""
    return DEFAULT_BUFFER if value is None else value


def wire(address: SocketAddress) -> SocketAddress:
    """The address as it travels: IPv4-mapped becomes plain IPv4; the unspecified address means
    this host (Linux sends to 0.0.0.0 / :: over loopback)."""
    plain = address.unmapped()
    if plain.host.is_unspecified:
        return SocketAddress(LOOPBACK[plain.family], plain.port)
    return plain


def as_seen_by(family: int, address: SocketAddress) -> SocketAddress:
    """How a socket of ``family`` sees a wire address (IPv4 through IPv6 is mapped)."""
    if family == 6 and address.family == 4:
        return address.to_v4_mapped()
    return address


@attrs.define(slots=True, eq=False)
class Binding:
    """One socket's claim on a port."""

    owner: object
    proto: Proto
    family: int
    host: IPAddress
    port: int
    v6only: bool
    reuse_port: bool
    listening: bool = False

    def view(self, ip_version: int) -> View:
        v4, v6 = views(self.family, self.host, self.v6only)
        return v4 if ip_version == 4 else v6

    def address_score(self, destination: SocketAddress) -> int:
        """-1 if traffic to ``destination`` (a wire address) misses this claim; else 1 for a
        specific address, 0 for a wildcard (a specific address wins)."""
        view = self.view(destination.family)
        if not view_matches(view, destination.host):
            return -1
        return 0 if view is ANY else 1


class PortTable:
    """One host's claims on its ports, per protocol.

    Example:
        >>> import ipaddress
        >>> table = PortTable("host1")
        >>> any4 = ipaddress.IPv4Address(0)
        >>> table.claim(None, "udp", 4, any4, 0, v6only=False, reuse_port=False).port
        32768
    """

    def __init__(self, label: str) -> None:
        self._label = label
        self._bindings: dict[tuple[Proto, int], list[Binding]] = {}
        self._next_port: dict[Proto, int] = {"udp": EPHEMERAL_LOW, "tcp": EPHEMERAL_LOW}

    def claim(
        self,
        owner: object,
        proto: Proto,
        family: int,
        host: IPAddress,
        port: int,
        *,
        v6only: bool,
        reuse_port: bool,
        listening: bool = False,
    ) -> Binding:
        """Reserve ``port`` (0: an ephemeral one) or raise EADDRINUSE."""
        binding = Binding(owner, proto, family, host, port, v6only, reuse_port, listening)
        if port == 0:
            binding.port = self._ephemeral(binding)
        elif self._conflicts(binding):
            raise oserror(errno.EADDRINUSE, f"{proto} port {port} on {self._label}")
        self._bindings.setdefault((proto, binding.port), []).append(binding)
        return binding

    def release(self, binding: Binding) -> None:
        """Give a port back (idempotent)."""
        claims = self._bindings.get((binding.proto, binding.port), [])
        if binding in claims:
            claims.remove(binding)
            if not claims:
                del self._bindings[(binding.proto, binding.port)]

    def bindings(self, proto: Proto, port: int) -> Sequence[Binding]:
        """The claims on one port, oldest first."""
        return self._bindings.get((proto, port), ())

    def _conflicts(self, new: Binding) -> bool:
        for old in self._bindings.get((new.proto, new.port), ()):
            if new.reuse_port and old.reuse_port:
                continue
            if _overlap(old.view(4), new.view(4)) or _overlap(old.view(6), new.view(6)):
                return True
        return False

    def _ephemeral(self, binding: Binding) -> int:
        span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
        start = self._next_port[binding.proto]
        for step in range(span):
            port = EPHEMERAL_LOW + (start - EPHEMERAL_LOW + step) % span
            # Linux never hands out an ephemeral port that any socket already holds.
            if (binding.proto, port) not in self._bindings:
                following = port + 1 if port < EPHEMERAL_HIGH else EPHEMERAL_LOW
                self._next_port[binding.proto] = following
                return port
        raise oserror(errno.EADDRINUSE, f"no free ephemeral {binding.proto} port")


class QueuedSocket(Protocol):
    """What the accounting checks read of a UDP socket."""

    @property
    def closed(self) -> bool: ...

    def queue_state(self) -> tuple[list[int], int, int]: ...


class BufferedStream(Protocol):
    """What the accounting checks read of a TCP stream end."""

    def buffered_bytes(self) -> int: ...


class SimulatedSocket:
    """What every simulated socket is: a host, a config, an option report and no OS descriptor."""

    def __init__(self, host: Node, config: NetConfig, family: int, options: OptionReport) -> None:
        self._host = host
        self._net: SimMedium = host.network
        self._config = config
        self._family = family
        self._options = options

    def _bind(self, proto: Proto, local: SocketAddress, *, v6only: bool, listening: bool = False) -> None:
        """Claim ``local`` on the host (port 0: an ephemeral port); ``_local`` gets the chosen port."""
        self._host.check_local(local.host)
        self._binding = self._host.ports.claim(
            self,
            proto,
            self._family,
            local.host,
            local.port,
            v6only=v6only,
            reuse_port=self._config.reuse_port,
            listening=listening,
        )
        self._local = attrs.evolve(local, port=self._binding.port)

    def fileno(self) -> int:
        """-1: a simulated socket has no OS descriptor."""
        return -1

    @property
    def options(self) -> OptionReport:
        """Every planned option, applied exactly (``effective == requested``)."""
        return self._options


class Node(Protocol):
    """What a simulated socket needs of its host (implemented by ``SimHost``)."""

    @property
    def network(self) -> SimMedium: ...

    @property
    def label(self) -> str: ...

    @property
    def ports(self) -> PortTable: ...

    def check_local(self, ip: IPAddress) -> None: ...

    def source_for(self, local: IPAddress, destination: IPAddress) -> IPAddress: ...

    def route(self, destination: IPAddress) -> Node | None: ...

    def forget_udp(self, sock: QueuedSocket) -> None: ...

    def adopt_stream(self, stream: BufferedStream) -> None: ...

    def forget_stream(self, stream: BufferedStream) -> None: ...
