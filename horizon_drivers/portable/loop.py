"""The portable readiness loop: ``selectors.DefaultSelector`` keyed by generational tokens.

Rules this module obeys:

* A registration lives in a :class:`~horizon_core.slab.Slab`; the selector's ``data`` for a descriptor
  is the registration's token. ``deregister`` unregisters the descriptor before it returns, and ``run``
  re-checks each token before calling the handler, so no event for a deregistered token is delivered,
  even one found by the same poll.
* A source closed while registered is *detached* when its descriptor number is reused by a new
  registration (epoll forgot it when it closed; the selector's map had not). Its token stays live until
  ``deregister``, and never produces an event again.
* The waker is a socketpair whose read end is registered with ``data=None``; ``wake`` writes one byte
  (a full pipe means a wake is already pending) and ``poll_once`` drains it without reporting it.
* A source closed without ``deregister`` stays silent: epoll and kqueue drop it themselves, and
  where ``select()`` fails on it (Windows) the runtime detaches every closed source and waits again.
* ``selectors`` reports only read and write readiness: a pending error or a hang-up shows as READABLE
  (and WRITABLE when asked for), and the next call on the socket raises the error. ERROR and HANGUP
  are never set by this driver.
* ``spin_budget`` (NetConfig) polls with a zero timeout for that many microseconds before blocking,
  trading a CPU for wake-up latency; ``poll_timeout`` is the default wait of ``poll_once(None)``
  and ``run`` (None there too: block until something is ready), as in the native driver.

Example:
    >>> from horizon_core import Interest, NetConfig
    >>> from horizon_drivers import portable
    >>> with portable.runtime(NetConfig()) as rt, portable.bind_udp("127.0.0.1:0") as sock:
    ...     token = rt.register(sock, Interest.READABLE)
    ...     _ = sock.send_to(b"hi", sock.local_address)
    ...     [event.token == token for event in rt.poll_once(1.0)]
    [True]
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from collections.abc import Callable

from horizon_core.config import NetConfig, resolve_config
from horizon_core.contract import Pollable
from horizon_core.errors import SocketClosedError
from horizon_core.events import Event, Interest, Readiness, check_interest, check_timeout
from horizon_core.slab import Slab, Token
from horizon_drivers.lifecycle import ReleaseOnce
from horizon_drivers.run_loop import RunLoop

__all__ = ["Runtime"]

# selectors' EVENT_READ/EVENT_WRITE are 1 and 2, the same bits as Interest and Readiness; building
# the flag once per mask keeps enum construction out of the per-event path.
_READINESS = {mask: Readiness(mask) for mask in (1, 2, 3)}


class _Registration:
    __slots__ = ("attached", "fd", "source")

    def __init__(self, source: Pollable, fd: int) -> None:
        self.source = source
        self.fd = fd
        self.attached = True  # False once the source's descriptor was reused by another


def _selector_mask(interest: Interest) -> int:
    # Interest's READABLE/WRITABLE bits are selectors' EVENT_READ/EVENT_WRITE.
    return int(check_interest(interest))


def _is_closed(source: Pollable) -> bool:
    closed = getattr(source, "closed", None)
    if isinstance(closed, bool):
        return closed
    try:  # a plain socket.socket: fileno() is -1 once closed
        return source.fileno() < 0
    except OSError:
        return True


class Runtime(ReleaseOnce):
    """A readiness loop over registered sockets, keyed by generational tokens.

    Example:
        >>> from horizon_drivers.portable import Runtime
        >>> with Runtime() as rt:
        ...     rt.poll_once(0)
        []
    """

    _what = "runtime"

    def __init__(self, config: NetConfig | None = None) -> None:
        config = resolve_config(config)
        self._default_timeout = config.poll_timeout
        self._spin = (config.spin_budget or 0) / 1e6
        self._slab: Slab[_Registration] = Slab()
        self._selector = selectors.DefaultSelector()
        self._loop = RunLoop()
        try:
            self._wake_r, self._wake_w = socket.socketpair()
            for end in (self._wake_r, self._wake_w):
                end.setblocking(False)
            self._selector.register(self._wake_r.fileno(), selectors.EVENT_READ, None)
        except BaseException:
            self._selector.close()
            raise

    # -- lifecycle ---------------------------------------------------------------------------

    def _release(self) -> None:
        """Close the selector and the waker (registered sockets stay open). Idempotent."""
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        self._slab = Slab()

    def __len__(self) -> int:
        """The number of live registrations."""
        return len(self._slab)

    def __contains__(self, token: object) -> bool:
        """True while ``token`` is registered."""
        return token in self._slab

    # -- registrations ----------------------------------------------------------------------

    def register(self, source: Pollable, interest: Interest) -> Token:
        """Watch ``source``; events for it carry the returned token.

        ValueError if ``source`` is already registered (use ``reregister``) or has no descriptor;
        SocketClosedError if it is closed.
        """
        self._check_open("register")
        mask = _selector_mask(interest)
        if _is_closed(source):
            raise SocketClosedError("source", "register")
        fd = source.fileno()
        if fd < 0:
            raise ValueError(f"{source!r} has no OS descriptor (fileno() == {fd})")
        previous = self._selector.get_map().get(fd)
        if previous is not None:
            if previous.data is None:
                raise ValueError(f"descriptor {fd} is this runtime's waker")
            old = self._slab.get(previous.data)
            if old.source is source or not _is_closed(old.source):
                raise ValueError(
                    f"descriptor {fd} is already registered as token {previous.data:#x};"
                    " use reregister() to change its interest"
                )
            # The old source closed and the OS handed its number to ``source``: the old token must
            # never see the new socket's events.
            self._selector.unregister(fd)
            old.attached = False
        registration = _Registration(source, fd)
        token = self._slab.insert(registration)
        try:
            self._selector.register(fd, mask, token)
        except BaseException:
            self._slab.remove(token)
            raise
        return token

    def reregister(self, token: Token, interest: Interest) -> None:
        """Change what a registered source is watched for.

        StaleTokenError for a token that is not registered; SocketClosedError if its source closed.
        """
        self._check_open("reregister")
        mask = _selector_mask(interest)
        registration = self._slab.get(token)
        if not registration.attached or _is_closed(registration.source):
            raise SocketClosedError("registered source", "reregister")
        try:
            self._selector.modify(registration.fd, mask, token)
        except OSError as exc:
            # EpollSelector.modify drops the key when epoll refuses (the descriptor was closed).
            registration.attached = False
            raise SocketClosedError("registered source", "reregister") from exc

    def deregister(self, token: Token) -> None:
        """Stop watching; no event for ``token`` is delivered after this returns.

        StaleTokenError for a token that is not registered (including one deregistered before).
        """
        self._check_open("deregister")
        registration = self._slab.remove(token)
        if registration.attached:
            # selectors ignores the OSError epoll raises for a descriptor closed meanwhile.
            self._selector.unregister(registration.fd)

    # -- polling ------------------------------------------------------------------------------

    def _detach_closed(self) -> int:
        """Unregister the descriptors of registered sources that were closed; return how many."""
        detached = 0
        for _, registration in self._slab.items():  # noqa: PERF102 (a Slab, not a dict)
            if registration.attached and _is_closed(registration.source):
                self._selector.unregister(registration.fd)
                registration.attached = False
                detached += 1
        return detached

    def _wait(self, timeout: float | None) -> list[tuple[selectors.SelectorKey, int]]:
        try:
            return self._selector.select(timeout)
        except (OSError, ValueError):
            # select() (Windows, SelectSelector) fails as a whole when one registered socket was
            # closed without deregistering; epoll and kqueue forget it by themselves. Detach the
            # closed ones (their tokens stay live, silent) and wait again.
            if not self._detach_closed():
                raise
            return self._selector.select(timeout)

    def _select(self, timeout: float | None) -> list[tuple[selectors.SelectorKey, int]]:
        if self._spin > 0 and timeout != 0:
            start = time.monotonic()
            deadline = start + self._spin
            while True:
                ready = self._wait(0)
                now = time.monotonic()
                if ready or now >= deadline:
                    break
            if ready:
                return ready
            if timeout is not None:
                timeout = max(0.0, timeout - (now - start))
        return self._wait(timeout)

    def poll_once(self, timeout: float | None = None) -> list[Event]:
        """Wait up to ``timeout`` seconds and return the events.

        None means the config's ``poll_timeout`` (None by default: until something is ready). A
        wake-up returns early, possibly with no events.
        """
        self._check_open("poll")
        timeout = check_timeout(timeout)
        if timeout is None:
            timeout = self._default_timeout
        events: list[Event] = []
        for key, mask in self._select(timeout):
            token = key.data
            if token is None:
                self._drain_waker()
            else:
                events.append(Event(token, _READINESS[mask]))
        return events

    def _drain_waker(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def run(self, handler: Callable[[Event], object], *, timeout: float | None = None) -> None:
        """Call ``handler`` for each event until ``stop()`` (or ``close()`` from a handler).

        ``timeout`` bounds each wait (None: as ``poll_once(None)``). A ``stop()`` that came
        before ``run`` makes it return at once. An event whose token a handler deregistered
        earlier in the same step is not delivered.
        """
        self._loop.run(self, handler, timeout)

    def stop(self) -> None:
        """Make ``run`` return after the current step. Safe from any thread; nothing once closed."""
        self._loop.stop(self)

    def wake(self) -> None:
        """Interrupt a blocked ``poll_once`` from any thread."""
        self._check_open("wake")
        try:
            self._wake_w.send(b"\0")
        except BlockingIOError:
            pass  # the pipe is full: a wake-up is already pending
        except OSError as exc:
            if exc.errno == errno.EBADF or self._closed:
                raise SocketClosedError("runtime", "wake") from exc
            raise

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._slab)} registered"
        return f"<portable.Runtime {state}>"
