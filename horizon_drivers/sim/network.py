"""The simulated network: hosts on one shared medium (virtual clock, seeded scheduler, ledger).

Rules this module obeys:

* Time, scheduling, randomness and accounting are the medium's
  (:class:`~horizon_drivers.sim.medium.SimMedium`, whose rules apply); a network adds its hosts.
* :meth:`SimNetwork.check_invariants` cross-checks the ledger against every host's sockets and
  the wire.
* Imports go one way: this module builds hosts (:mod:`~horizon_drivers.sim.host`); hosts and
  sockets hold only the :class:`~horizon_drivers.sim.medium.SimMedium` part of it.
"""

from __future__ import annotations

import ipaddress

from horizon_core.addresses import IPAddress
from horizon_core.faults import FaultPlan
from horizon_drivers.sim.host import SimHost
from horizon_drivers.sim.ledger import AccountingError, DatagramState
from horizon_drivers.sim.medium import SimDeadlockError, SimMedium

__all__ = ["SimDeadlockError", "SimNetwork"]


class SimNetwork(SimMedium):
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
        super().__init__(seed, faults, trace=trace)
        self._hosts: list[SimHost] = []
        # Shared with every host: where traffic to an address goes.
        self._by_address: dict[IPAddress, SimHost] = {}

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
        host = SimHost(self, tuple(parsed), label, self._by_address)
        self._hosts.append(host)
        for ip in parsed:
            self._by_address[ip] = host
        return host

    def host_for(self, ip: IPAddress) -> SimHost | None:
        """The host that owns ``ip`` (not loopback), or None."""
        return self._by_address.get(ip)

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
