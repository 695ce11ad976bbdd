"""The ``horizon bench`` scenarios besides ``echo``: who runs, how the load runs, in rounds.

* ``gso`` — UDP echo throughput: the native driver replying with UDP GSO messages
  (``NetConfig.udp_gso_batch``, the default) against the same server sending one message per
  datagram (``udp_gso_batch=False``), the C reference server (``c``: recvmmsg/sendmmsg), a
  stdlib loop and a uvloop ``DatagramProtocol``;
* ``spin`` — UDP round trip, one datagram in flight, the client spinning: the native server
  with a spin budget (``NetConfig.spin_budget``: busy-poll before blocking) against the same
  server blocking in epoll, the anyio driver both ways (on asyncio and on uvloop, its batch
  calls), and the C reference server both ways (``c-spin``, ``c-blocking``);
* ``tcp-spin`` — the same for TCP on one connection, with the anyio driver too (its receives
  retry at every event-loop pass while the budget lasts): the ping-pong round trip, and
  messages per second with 256 in flight;
* ``aio-backends`` — UDP echo throughput of the anyio driver on each anyio backend (asyncio,
  uvloop, trio), with its batches (``receive_batch``/``send_batch``) and per datagram
  (``receive``/``send``), against plain ``anyio.create_udp_socket`` on the same backend and a
  uvloop ``DatagramProtocol``.

Every server socket gets the same receive/send buffers (``--buffer``). Rounds are interleaved
(round 1 of every server, then round 2...) so machine noise hits them alike; the report takes
medians.

Example:
    >>> [e.label for e in ROUNDS_SCENARIOS["spin"].entries(50)][:6]
    ['native-spin', 'native-blocking', 'aio-spin', 'aio-blocking', 'aio-uvloop-spin', 'aio-uvloop-blocking']
    >>> ROUNDS_SCENARIOS["tcp-spin"].protocol
    'tcp'
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from horizon_drivers import registry
from horizon_drivers.bench.peers import BACKENDS, backend_status, peer_status

__all__ = ["ROUNDS_SCENARIOS", "SCENARIO_NAMES", "SPIN_SCENARIOS", "Entry", "Scenario"]


@attrs.frozen
class Entry:
    """One server in a scenario: its table label, the child's contender and ``serve`` options."""

    label: str
    contender: str
    backend: str = ""
    server_args: tuple[str, ...] = ()

    def unavailable(self) -> str | None:
        """Why this server cannot run here, or None."""
        if self.contender in registry.DRIVER_NAMES:
            status = registry.driver_status(self.contender)
            if not status.available:
                return status.reason
        else:
            peer = peer_status(self.contender)
            if not peer.available:
                return peer.reason
        if self.backend:
            backend = backend_status(self.backend)
            if not backend.available:
                return backend.reason
        return None


@attrs.frozen
class Scenario:
    """A rounds scenario: what it measures (``mode``: the child's load mode) and who runs."""

    name: str
    mode: str  # "throughput" or "rtt"
    title: str
    entries: Callable[[int], tuple[Entry, ...]]  # from the spin budget (µs)
    protocol: str = "udp"


def _gso(spin_budget: int) -> tuple[Entry, ...]:
    return (
        Entry("native", "native"),
        Entry("native-plain", "native", server_args=("--no-gso",)),
        Entry("c", "c"),
        Entry("stdlib", "stdlib"),
        Entry("uvloop", "uvloop"),
    )


def _spin(spin_budget: int) -> tuple[Entry, ...]:
    # spin and tcp-spin: each server spinning, then the same server blocking.
    spin = ("--spin-budget", str(spin_budget))
    entries: list[Entry] = []
    for label, contender, backend in _SPINNERS:
        on = ("--backend", backend) if backend else ()
        entries += [Entry(f"{label}-spin", contender, backend, (*on, *spin)),
                    Entry(f"{label}-blocking", contender, backend, on)]
    return tuple(entries)


#: The servers of spin and tcp-spin: (label, contender, anyio backend).
_SPINNERS = (("native", "native", ""), ("aio", "aio", "asyncio"), ("aio-uvloop", "aio", "uvloop"),
             ("c", "c", ""))


def _aio_backends(spin_budget: int) -> tuple[Entry, ...]:
    entries: list[Entry] = []
    for backend in BACKENDS:
        on = ("--backend", backend)
        entries += [
            Entry("horizon-batch", "aio", backend, on),
            Entry("horizon-single", "aio", backend, (*on, "--per-datagram")),
            Entry("anyio-plain", "anyio", backend, on),
        ]
    entries.append(Entry("uvloop-protocol", "uvloop", "uvloop"))
    return tuple(entries)


#: The scenarios measured in interleaved rounds, by name.
ROUNDS_SCENARIOS: dict[str, Scenario] = {
    "gso": Scenario("gso", "throughput", "UDP echo throughput, GSO replies vs one message each",
                    _gso),
    "spin": Scenario("spin", "rtt", "UDP round trip, window 1, spin budget vs blocking epoll",
                     _spin),
    "tcp-spin": Scenario("tcp-spin", "rtt",
                         "TCP round trip and pipelined messages, spin budget vs blocking",
                         _spin, protocol="tcp"),
    "aio-backends": Scenario("aio-backends", "throughput",
                             "UDP echo throughput of the anyio driver on each backend",
                             _aio_backends),
}
#: The scenarios comparing servers that spin with the same servers blocking.
SPIN_SCENARIOS: frozenset[str] = frozenset({"spin", "tcp-spin"})
#: The names ``--scenario`` accepts, the default first.
SCENARIO_NAMES: tuple[str, ...] = ("echo", *ROUNDS_SCENARIOS)
