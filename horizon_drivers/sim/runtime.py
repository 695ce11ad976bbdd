"""The sim's readiness runtime: level-triggered polling over simulated sockets, on virtual time.

Rules this module obeys:

* Registrations live in a :class:`~horizon_core.slab.Slab`, so a token of a deregistered socket
  is stale at once and can never produce an event, even after its slot is reused.
* Level-triggered, like epoll without EPOLLET: a poll reports every registered open socket that
  is ready now, in slot order. ERROR and HANGUP are always reported, whatever the interest.
* ``poll_once(timeout)`` never sleeps: if nothing is ready it runs the network's clock forward to
  the next scheduled event, up to ``timeout`` virtual seconds. With no timeout (and no
  ``config.poll_timeout``) and nothing scheduled, nothing could ever happen:
  :class:`~horizon_drivers.sim.medium.SimDeadlockError` says so instead of hanging.
* A closed socket stops producing events (as epoll forgets a closed descriptor) but its token
  stays registered until ``deregister``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs

from horizon_core.config import NetConfig
from horizon_core.contract import Pollable
from horizon_core.errors import SocketClosedError
from horizon_core.events import Event, Interest, Readiness, check_interest, check_timeout
from horizon_core.slab import Slab, Token
from horizon_drivers.lifecycle import ReleaseOnce
from horizon_drivers.run_loop import RunLoop
from horizon_drivers.sim.medium import SimDeadlockError, SimMedium
from horizon_drivers.sim.tcp import SimTcpListener, SimTcpStream
from horizon_drivers.sim.udp import SimUdpSocket

__all__ = ["SimRuntime"]

SimSocket = SimUdpSocket | SimTcpStream | SimTcpListener

_ALWAYS = Readiness.ERROR | Readiness.HANGUP


@attrs.define(slots=True, eq=False)
class _Registration:
    source: SimSocket
    interest: Interest



class SimRuntime(ReleaseOnce):
    """A Runtime over a network's sockets (any host's), on its virtual clock.

    Example:
        >>> from horizon_core.events import Interest
        >>> from horizon_drivers.sim import FaultPlan, SimNetwork
        >>> net = SimNetwork(faults=FaultPlan(latency=(0.25, 0.25)))
        >>> host = net.add_host()
        >>> a, b = host.bind_udp("127.0.0.1:0"), host.bind_udp("127.0.0.1:0")
        >>> rt = host.runtime()
        >>> token = rt.register(b, Interest.READABLE)
        >>> a.send_to(b"x", b.local_address)
        1
        >>> [e.readable for e in rt.poll_once(1.0)], net.now
        ([True], 0.25)
    """

    _what = "runtime"

    def __init__(self, network: SimMedium, config: NetConfig) -> None:
        self._net = network
        self._config = config
        self._slab: Slab[_Registration] = Slab()
        self._loop = RunLoop()
        self._woken = False

    @property
    def network(self) -> SimMedium:
        """The network whose clock this runtime drives."""
        return self._net

    def _release(self) -> None:
        """Drop every registration; later calls raise SocketClosedError. Idempotent."""
        for token in list(self._slab):
            self._slab.remove(token)

    def __repr__(self) -> str:
        return f"<SimRuntime {len(self._slab)} registered{' closed' if self._closed else ''}>"

    # -- registrations ---------------------------------------------------------------------

    def register(self, source: Pollable, interest: Interest) -> Token:
        """Watch ``source`` (a socket of this network) for ``interest``; return its token."""
        self._check_open("register with")
        if not isinstance(source, SimUdpSocket | SimTcpStream | SimTcpListener):
            raise TypeError(f"the sim runtime only watches sim sockets, got {source!r}")
        if source._net is not self._net:
            raise ValueError(f"{source!r} belongs to another SimNetwork")
        interest = check_interest(interest)
        if source.closed:
            # As native and portable: a closed socket has no descriptor to watch.
            raise SocketClosedError("socket", "register")
        for token, reg in self._slab.items():
            if reg.source is source:
                raise ValueError(
                    f"{source!r} is already registered as token {token:#x};"
                    " use reregister() to change its interest"
                )
        return self._slab.insert(_Registration(source, interest))

    def reregister(self, token: Token, interest: Interest) -> None:
        """Change what ``token``'s source is watched for (StaleTokenError if not live)."""
        self._check_open("reregister with")
        registration = self._slab.get(token)
        registration.interest = check_interest(interest)

    def deregister(self, token: Token) -> None:
        """Stop watching; ``token`` is stale from now on (StaleTokenError if it already was)."""
        self._check_open("deregister from")
        self._slab.remove(token)

    # -- polling ---------------------------------------------------------------------------

    def poll_once(self, timeout: float | None = None) -> list[Event]:
        """Return the ready sources; if none, advance virtual time (up to ``timeout``).

        ``timeout=None`` waits until something is ready. Nothing ever sleeps for real.
        """
        self._check_open("poll")
        timeout = check_timeout(timeout)
        net = self._net
        net.settle()
        deadline = None if timeout is None else net.now + timeout
        while True:
            events = self._ready()
            if events or self._woken:
                self._woken = False
                return events
            upcoming = net.next_event_time()
            if upcoming is None or (deadline is not None and upcoming > deadline):
                if deadline is None:
                    raise SimDeadlockError(
                        f"poll_once(None) at t={net.now:g} would block for ever: no registered "
                        "socket is ready and nothing is scheduled on the network"
                    )
                if math.isfinite(deadline):
                    net.run_to(deadline)
                return []
            net.run_to(upcoming)

    def _ready(self) -> list[Event]:
        events: list[Event] = []
        for token, registration in self._slab.items():
            source = registration.source
            if source.closed:
                continue
            ready = source.readiness() & (Readiness(int(registration.interest)) | _ALWAYS)
            if ready:
                events.append(Event(token, ready))
        return events

    def run(self, handler: Callable[[Event], object], *, timeout: float | None = None) -> None:
        """Call ``handler`` for each event until ``stop()`` (or ``close()`` from a handler).

        ``timeout`` bounds each wait; None uses the config's ``poll_timeout`` (None: wait until
        ready). A ``stop()`` before ``run`` makes it return at once. An event whose token a
        handler deregistered earlier in the same step is not delivered.
        """
        wait = self._config.poll_timeout if timeout is None else timeout
        self._loop.run(self, handler, wait)

    def stop(self) -> None:
        """Make ``run`` return after the current step; nothing on a closed runtime."""
        self._loop.stop(self)

    def wake(self) -> None:
        """Make the current or next ``poll_once`` return at once (possibly with no events)."""
        self._check_open("wake")
        self._woken = True

    def __contains__(self, token: object) -> bool:
        """True while ``token`` is registered."""
        return token in self._slab

    def registered(self) -> dict[Token, Pollable]:
        """The live registrations: token -> source."""
        return {token: reg.source for token, reg in self._slab.items()}
