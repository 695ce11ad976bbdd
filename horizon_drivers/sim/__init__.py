"""The simulated network driver: the sync contract over an in-memory network with virtual time.

Build a :class:`SimNetwork` from a seed and a :class:`~horizon_core.faults.FaultPlan`, add hosts,
and use each host exactly as any other driver (``host.bind_udp``, ``host.connect_tcp``,
``host.runtime()``...). Every random decision comes from the seed, so a failing run replays
exactly; ``net.ledger`` accounts for every datagram and TCP byte, and ``net.trace`` lists what
happened when.

Example:
    >>> from horizon_drivers.sim import FaultPlan, SimNetwork
    >>> net = SimNetwork(seed=7, faults=FaultPlan(loss=0.5))
    >>> host = net.add_host("10.0.0.1")
    >>> a, b = host.bind_udp("10.0.0.1:0"), host.bind_udp("10.0.0.1:9000")
    >>> for _ in range(100):
    ...     _ = a.send_to(b"x", "10.0.0.1:9000")
    >>> ledger = net.ledger
    >>> ledger.datagrams_sent == ledger.datagrams_queued + ledger.dropped["loss"]
    True
    >>> net.check_invariants()
"""

from __future__ import annotations

from horizon_core.faults import FaultPlan
from horizon_drivers.sim.host import SimHost
from horizon_drivers.sim.ledger import (
    AccountingError,
    DatagramState,
    DropReason,
    Ledger,
    TraceEntry,
)
from horizon_drivers.sim.network import SimDeadlockError, SimNetwork
from horizon_drivers.sim.runtime import SimRuntime
from horizon_drivers.sim.tcp import SimTcpListener, SimTcpStream, StreamState
from horizon_drivers.sim.udp import SimUdpSocket

__all__ = [
    "DRIVER",
    "NAME",
    "AccountingError",
    "DatagramState",
    "DropReason",
    "FaultPlan",
    "Ledger",
    "SimDeadlockError",
    "SimHost",
    "SimNetwork",
    "SimRuntime",
    "SimTcpListener",
    "SimTcpStream",
    "SimUdpSocket",
    "StreamState",
    "TraceEntry",
    "driver",
]


def driver(seed: int = 0, faults: FaultPlan | None = None) -> SimHost:
    """A one-host network's host: the sim as a plain ``Driver`` (e.g. for the contract suite).

    The host owns ``10.0.0.1`` and ``fd00::1`` besides loopback; reach its network through
    ``host.network`` (clock, ledger, trace).

    Example:
        >>> host = driver(seed=1)
        >>> host.name, host.network.seed
        ('sim', 1)
    """
    return SimNetwork(seed=seed, faults=faults).add_host("10.0.0.1", "fd00::1")


#: The name the registry and the command line use.
NAME = "sim"

#: The registry's sim driver: one host (10.0.0.1, fd00::1, loopback) on a fault-free network
#: (seed 0, no trace kept) shared by every caller of ``DRIVER`` in the process, as the OS is for
#: the other drivers. For isolated, replayable runs build your own :class:`SimNetwork`.
DRIVER: SimHost = SimNetwork(seed=0, trace=False).add_host("10.0.0.1", "fd00::1")
