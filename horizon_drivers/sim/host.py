"""A simulated host: the sim's Driver (a factory of sockets and runtimes) and its port tables.

Rules this module obeys:

* A host owns its addresses plus loopback (127.0.0.0/8 and ::1); binding any other specific
  address fails with EADDRNOTAVAIL, as on Linux.
* Ports are per host and per protocol. Two bindings conflict when their addresses overlap
  (equal, or either a wildcard; a dual-stack ``[::]`` covers every IPv4 address), unless both
  asked for ``reuse_port`` (SO_REUSEPORT). Port 0 takes the next free ephemeral port from
  32768..60999 (Linux's ``ip_local_port_range``), in order, so runs replay.
* Configs are checked before anything is allocated: an invalid config cannot exist (NetConfig
  validates itself), and anything that is not a NetConfig is refused with TypeError.
* Options: the sim applies every planned option exactly, so each report says
  ``effective == requested`` (the plan is the core's ``plan_options`` for Linux).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import zlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Final, Literal

import attrs

from horizon_core.addresses import IPAddress, SocketAddress, as_socket_address
from horizon_core.config import NetConfig
from horizon_core.contract import AddressLike
from horizon_core.errors import ConfigError, FieldProblem
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

if TYPE_CHECKING:
    from horizon_drivers.sim.network import SimNetwork
    from horizon_drivers.sim.runtime import SimRuntime
    from horizon_drivers.sim.tcp import SimTcpListener, SimTcpStream
    from horizon_drivers.sim.udp import SimUdpSocket

__all__ = ["SimHost"]

EPHEMERAL_LOW: Final = 32768
EPHEMERAL_HIGH: Final = 60999
#: Linux's net.core.rmem_default / wmem_default: the buffer a socket gets when the config says None.
DEFAULT_BUFFER: Final = 212992

_APPLIED_REASON: Final = "simulated: effective == requested (the sim applies every option exactly)"

Proto = Literal["udp", "tcp"]


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


def check_config(config: NetConfig | None) -> NetConfig:
    """The config to use; TypeError for anything that is not a NetConfig."""
    if config is None:
        return NetConfig()
    if not isinstance(config, NetConfig):
        raise TypeError(f"config must be a NetConfig or None, got {type(config).__name__}")
    return config


def buffer_size(value: int | None) -> int:
    """A configured buffer in bytes (None: the Linux default)."""
    return DEFAULT_BUFFER if value is None else value


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


class SimHost:
    """One host of a :class:`~horizon_drivers.sim.network.SimNetwork`; a ``Driver`` named "sim".

    Example:
        >>> from horizon_drivers.sim import SimNetwork
        >>> host = SimNetwork(seed=3).add_host("10.0.0.1")
        >>> with host.bind_udp("127.0.0.1:0") as sock:
        ...     sock.local_address.port
        32768
    """

    def __init__(self, network: SimNetwork, addresses: tuple[IPAddress, ...], label: str) -> None:
        self._network = network
        self._addresses = addresses
        self._label = label
        self._bindings: dict[tuple[Proto, int], list[Binding]] = {}
        self._next_port: dict[Proto, int] = {"udp": EPHEMERAL_LOW, "tcp": EPHEMERAL_LOW}
        self._udp: list[SimUdpSocket] = []
        self._streams: list[SimTcpStream] = []

    @property
    def name(self) -> str:
        """The driver name: ``"sim"``."""
        return "sim"

    @property
    def label(self) -> str:
        """This host's label within its network (``host1``...)."""
        return self._label

    @property
    def network(self) -> SimNetwork:
        """The network this host belongs to."""
        return self._network

    @property
    def addresses(self) -> tuple[IPAddress, ...]:
        """The host's own addresses (loopback not listed)."""
        return self._addresses

    def owns(self, ip: IPAddress) -> bool:
        """True for the host's addresses and loopback."""
        return ip.is_loopback or ip in self._addresses

    def __repr__(self) -> str:
        return f"<SimHost {self._label} {', '.join(map(str, self._addresses)) or 'loopback'}>"

    # -- Driver ------------------------------------------------------------------------------

    def bind_udp(self, address: AddressLike, config: NetConfig | None = None) -> SimUdpSocket:
        """Open a UDP socket bound to ``address`` (port 0: an ephemeral port)."""
        from horizon_drivers.sim.udp import SimUdpSocket

        config = check_config(config)
        local = as_socket_address(address)
        v6only = local.family == 6 and config.ipv6_only is True
        sock = SimUdpSocket(self, config, local, v6only)
        self._udp.append(sock)
        return sock

    def bind_udp_dual_stack(self, port: int, config: NetConfig | None = None) -> SimUdpSocket:
        """Bind ``[::]:port`` with IPV6_V6ONLY off: IPv4 peers appear as ``::ffff:a.b.c.d``.

        ConfigError when ``config.ipv6_only`` is True.
        """
        config = check_config(config)
        if type(port) is not int or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int from 0 to 65535, got {port!r}")
        if config.ipv6_only is True:
            # As the other drivers: a dual-stack socket that asks for IPv6-only is a contradiction.
            raise ConfigError([FieldProblem("ipv6_only", True, "None or False for a dual-stack socket")])
        if config.ipv6_only is None:
            config = attrs.evolve(config, ipv6_only=False)
        return self.bind_udp(SocketAddress(ipaddress.IPv6Address(0), port), config)

    def bind_tcp(self, address: AddressLike, config: NetConfig | None = None) -> SimTcpListener:
        """Open, bind and listen (backlog ``config.tcp_backlog``, as Linux: backlog+1 fit)."""
        from horizon_drivers.sim.tcp import SimTcpListener

        config = check_config(config)
        local = as_socket_address(address)
        return SimTcpListener(self, config, local)

    def connect_tcp(self, address: AddressLike, config: NetConfig | None = None) -> SimTcpStream:
        """Start a connect; ``finish_connect()`` says when it is done (or raises its error)."""
        from horizon_drivers.sim.tcp import SimTcpStream

        config = check_config(config)
        remote = as_socket_address(address)
        return SimTcpStream.connect(self, config, remote)

    def runtime(self, config: NetConfig | None = None) -> SimRuntime:
        """A readiness runtime over this network's sockets (any host's)."""
        from horizon_drivers.sim.runtime import SimRuntime

        return SimRuntime(self._network, check_config(config))

    # -- addresses and ports (used by the sockets) ---------------------------------------

    def check_local(self, ip: IPAddress) -> None:
        """EADDRNOTAVAIL unless ``ip`` is a wildcard, loopback or one of this host's."""
        plain = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        target = plain if plain is not None else ip
        if not (target.is_unspecified or self.owns(target)):
            raise oserror(errno.EADDRNOTAVAIL, f"{ip} is not an address of {self._label}")

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

    def source_for(self, local: IPAddress, destination: IPAddress) -> IPAddress:
        """The source address of traffic from ``local`` (a wire address) to ``destination``."""
        if not local.is_unspecified:
            if local.is_loopback and not self._is_local(destination):
                # Linux: a socket bound to loopback cannot reach other hosts.
                raise oserror(errno.EINVAL, f"{local} cannot send to {destination}")
            return local
        if destination.is_loopback or destination.is_unspecified:
            return LOOPBACK[destination.version]
        if destination in self._addresses:
            return destination
        for ip in self._addresses:
            if ip.version == destination.version:
                return ip
        raise oserror(errno.ENETUNREACH, f"{self._label} has no IPv{destination.version} address")

    def _is_local(self, ip: IPAddress) -> bool:
        return ip.is_unspecified or self.owns(ip)

    def route(self, destination: IPAddress) -> SimHost | None:
        """The host that traffic to ``destination`` reaches (self for local addresses)."""
        if self._is_local(destination):
            return self
        return self._network.host_for(destination)

    # -- inventories (accounting checks) --------------------------------------------------

    def udp_sockets(self) -> Iterator[SimUdpSocket]:
        """Open UDP sockets."""
        return iter([s for s in self._udp if not s.closed])

    def tcp_streams(self) -> Iterator[SimTcpStream]:
        """Stream ends not yet closed, including accepted-but-not-yet-taken ones."""
        return iter(list(self._streams))

    def adopt_stream(self, stream: SimTcpStream) -> None:
        """Track a stream end until it closes."""
        self._streams.append(stream)

    def forget_stream(self, stream: SimTcpStream) -> None:
        """Stop tracking a closed stream end."""
        if stream in self._streams:
            self._streams.remove(stream)

    def forget_udp(self, sock: SimUdpSocket) -> None:
        """Stop tracking a closed UDP socket."""
        if sock in self._udp:
            self._udp.remove(sock)


LOOPBACK: Final[dict[int, IPAddress]] = {
    4: ipaddress.IPv4Address("127.0.0.1"),
    6: ipaddress.IPv6Address("::1"),
}


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
