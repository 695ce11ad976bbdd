"""A simulated host: the sim's Driver (a factory of sockets and runtimes) and its port tables.

Rules this module obeys:

* A host owns its addresses plus loopback (127.0.0.0/8 and ::1); binding any other specific
  address fails with EADDRNOTAVAIL, as on Linux.
* Ports are per host and per protocol (:class:`~horizon_drivers.sim.ports.PortTable`).
* Configs are checked before anything is allocated: an invalid config cannot exist (NetConfig
  validates itself), and anything that is not a NetConfig is refused with TypeError
  (:func:`~horizon_core.config.resolve_config`, as every driver).
* The host sits above the sockets and the runtime it builds; they see it only through
  :class:`~horizon_drivers.sim.ports.Node`, and it sees its network only as the shared
  :class:`~horizon_drivers.sim.medium.SimMedium` plus the network's routing table.
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Iterator, Mapping

from horizon_core.addresses import IPAddress, SocketAddress, as_socket_address
from horizon_core.config import NetConfig, dual_stack_config, resolve_config
from horizon_core.contract import AddressLike
from horizon_drivers.sim.medium import SimMedium
from horizon_drivers.sim.ports import (
    LOOPBACK,
    BufferedStream,
    PortTable,
    QueuedSocket,
    oserror,
)
from horizon_drivers.sim.runtime import SimRuntime
from horizon_drivers.sim.tcp import SimTcpListener, SimTcpStream
from horizon_drivers.sim.udp import SimUdpSocket

__all__ = ["SimHost"]


class SimHost:
    """One host of a :class:`~horizon_drivers.sim.network.SimNetwork`; a ``Driver`` named "sim".

    Example:
        >>> from horizon_drivers.sim import SimNetwork
        >>> host = SimNetwork(seed=3).add_host("10.0.0.1")
        >>> with host.bind_udp("127.0.0.1:0") as sock:
        ...     sock.local_address.port
        32768
    """

    def __init__(
        self,
        network: SimMedium,
        addresses: tuple[IPAddress, ...],
        label: str,
        routes: Mapping[IPAddress, SimHost],
    ) -> None:
        self._network = network
        self._addresses = addresses
        self._label = label
        self._routes = routes
        self._ports = PortTable(label)
        self._udp: list[QueuedSocket] = []
        self._streams: list[BufferedStream] = []

    @property
    def name(self) -> str:
        """The driver name: ``"sim"``."""
        return "sim"

    @property
    def label(self) -> str:
        """This host's label within its network (``host1``...)."""
        return self._label

    @property
    def network(self) -> SimMedium:
        """The network this host belongs to (its clock, ledger, trace and faults)."""
        return self._network

    @property
    def ports(self) -> PortTable:
        """This host's port claims (per protocol)."""
        return self._ports

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
        config = resolve_config(config)
        local = as_socket_address(address)
        v6only = local.family == 6 and config.ipv6_only is True
        sock = SimUdpSocket(self, config, local, v6only)
        self._udp.append(sock)
        return sock

    def bind_udp_dual_stack(self, port: int, config: NetConfig | None = None) -> SimUdpSocket:
        """Bind ``[::]:port`` with IPV6_V6ONLY off: IPv4 peers appear as ``::ffff:a.b.c.d``.

        ConfigError when ``config.ipv6_only`` is True.
        """
        config = dual_stack_config(resolve_config(config))
        if type(port) is not int or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int from 0 to 65535, got {port!r}")
        return self.bind_udp(SocketAddress(ipaddress.IPv6Address(0), port), config)

    def bind_tcp(self, address: AddressLike, config: NetConfig | None = None) -> SimTcpListener:
        """Open, bind and listen (backlog ``config.tcp_backlog``, as Linux: backlog+1 fit)."""
        config = resolve_config(config)
        return SimTcpListener(self, config, as_socket_address(address))

    def connect_tcp(self, address: AddressLike, config: NetConfig | None = None) -> SimTcpStream:
        """Start a connect; ``finish_connect()`` says when it is done (or raises its error)."""
        config = resolve_config(config)
        return SimTcpStream.connect(self, config, as_socket_address(address))

    def runtime(self, config: NetConfig | None = None) -> SimRuntime:
        """A readiness runtime over this network's sockets (any host's)."""
        return SimRuntime(self._network, resolve_config(config))

    # -- addresses and ports (used by the sockets) ---------------------------------------

    def check_local(self, ip: IPAddress) -> None:
        """EADDRNOTAVAIL unless ``ip`` is a wildcard, loopback or one of this host's."""
        plain = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        target = plain if plain is not None else ip
        if not (target.is_unspecified or self.owns(target)):
            raise oserror(errno.EADDRNOTAVAIL, f"{ip} is not an address of {self._label}")

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
        return self._routes.get(destination)

    # -- inventories (accounting checks) --------------------------------------------------

    def udp_sockets(self) -> Iterator[QueuedSocket]:
        """Open UDP sockets."""
        return iter([s for s in self._udp if not s.closed])

    def tcp_streams(self) -> Iterator[BufferedStream]:
        """Stream ends not yet closed, including accepted-but-not-yet-taken ones."""
        return iter(list(self._streams))

    def adopt_stream(self, stream: BufferedStream) -> None:
        """Track a stream end until it closes."""
        self._streams.append(stream)

    def forget_stream(self, stream: BufferedStream) -> None:
        """Stop tracking a closed stream end."""
        if stream in self._streams:
            self._streams.remove(stream)

    def forget_udp(self, sock: QueuedSocket) -> None:
        """Stop tracking a closed UDP socket."""
        if sock in self._udp:
            self._udp.remove(sock)
