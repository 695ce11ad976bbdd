"""The drivers the contract suite runs against, and the per-example test network.

Rules this module obeys:

* Which drivers exist comes from :mod:`horizon_drivers.registry`; an unavailable one is skipped with
  the registry's reason. The async anyio driver joins twice, on asyncio and on trio, through
  :mod:`aio_adapter` (a sync facade), never through a second copy of the tests.
* A property body never sleeps and never calls ``select`` itself: every wait goes through the
  driver's own ``Runtime.poll_once``, so the same body drives real sockets and the simulated
  network, whose clock only moves when its runtime polls.
* Every loop is bounded twice: by a count of rounds and by a wall-clock deadline. A driver that
  never delivers fails with a message saying what it was waiting for, it does not hang.
* Everything a :class:`Net` opens is deregistered and closed when the example ends, pass or fail.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import pytest

from horizon_core.addresses import SocketAddress
from horizon_core.buffers import Batch
from horizon_core.config import NetConfig
from horizon_core.contract import (
    AddressLike,
    Driver,
    Pollable,
    Runtime,
    TcpListener,
    TcpStream,
    UdpSocket,
)
from horizon_core.events import Interest, Readiness
from horizon_core.options import Feature, Platform
from horizon_core.slab import Token
from horizon_drivers import registry
from horizon_drivers.opening import NATIVE_FEATURES

__all__ = [
    "DRIVER_IDS",
    "FAMILIES",
    "UNDER_WINE",
    "DriverUnderTest",
    "Net",
    "Received",
    "load_driver",
    "open_fd_count",
]

#: Every parametrization of the suite, in report order.
DRIVER_IDS = ("native", "portable", "aio-asyncio", "aio-trio", "iocp", "sim", "uring")

T = TypeVar("T")


def _loopback_v6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _under_wine() -> bool:
    """True in a Windows process under Wine (its ntdll exports ``wine_get_version``)."""
    if sys.platform != "win32":
        return False
    import ctypes

    try:
        ntdll = ctypes.WinDLL("ntdll")  # type: ignore[attr-defined,unused-ignore]
    except OSError:
        return False
    return hasattr(ntdll, "wine_get_version")


#: Under Wine, where tests check what Wine can show (docs/windows.md).
UNDER_WINE: bool = _under_wine()

#: Address families to draw: IPv6 only where this host has a ``::1``.
FAMILIES: tuple[int, ...] = (4, 6) if _loopback_v6() else (4,)
#: Loopback addresses with port 0, by family.
LOOPBACK = {4: "127.0.0.1:0", 6: "[::1]:0"}

#: Upper bound on any single wait of the suite, seconds of wall time.
WAIT_LIMIT = 5.0
#: Upper bound on the rounds of any retry loop (each round is one try plus one bounded poll).
MAX_ROUNDS = 2000
#: The longest single poll_once; short so a missed wake-up costs little.
POLL_STEP = 0.05


class _Closeable(Protocol):
    def close(self) -> None: ...


@dataclass
class DriverUnderTest:
    """One parametrization: how to get a driver, and what kind of driver it is.

    ``has_fd``: its sockets are OS sockets, so ``fileno()`` can be checked with getsockopt and
    descriptor counts are meaningful. ``own_runtime``: ``driver.runtime()`` is the driver's own
    readiness loop (False for the anyio adapter, whose event loop is anyio's). ``virtual_time``:
    polling advances a simulated clock.
    """

    id: str
    make_driver: Callable[[], Driver]
    has_fd: bool = True
    own_runtime: bool = True
    virtual_time: bool = False
    connected_udp: bool = True
    #: The platform whose option plan the driver's reports follow (None: this host's).
    option_platform: Platform | None = None
    #: What the driver implements beyond applying options (its plans are made with these).
    features: frozenset[Feature] = frozenset()
    finalizers: list[Callable[[], None]] = field(default_factory=list)

    def net(self) -> Net:
        """A fresh per-example network (the sim: a new seeded network every time)."""
        return Net(self)

    def close(self) -> None:
        """Run the finalizers (the adapter's event-loop thread)."""
        while self.finalizers:
            self.finalizers.pop()()


def _sync_driver(name: str) -> DriverUnderTest:
    status = registry.driver_status(name)
    if not status.available:
        pytest.skip(f"{name}: {status.reason}")
    if name == "sim":
        module = registry.driver_module("sim")
        seeds = iter(range(1, 2**31))
        return DriverUnderTest(
            name,
            lambda: module.driver(seed=next(seeds)),
            has_fd=False,
            virtual_time=True,
            option_platform=Platform.LINUX,  # the simulated kernel is Linux
        )
    driver = registry.get_driver(name)
    features = NATIVE_FEATURES if name == "native" else frozenset()
    # Windows socket handles are not file descriptors: os.dup/os.get_blocking do not apply.
    return DriverUnderTest(name, lambda: driver, has_fd=sys.platform != "win32", features=features)


def _aio_driver(backend: str) -> DriverUnderTest:
    status = registry.driver_status("aio")
    if not status.available:
        pytest.skip(f"aio-{backend}: {status.reason}")
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"aio-{backend}: {backend} is not installed")
    from tests.contract import aio_adapter

    try:
        adapter = aio_adapter.AioAdapterDriver(backend)
    except aio_adapter.AdapterUnavailableError as exc:
        pytest.skip(f"aio-{backend}: {exc}")
    return DriverUnderTest(
        f"aio-{backend}",
        lambda: adapter,
        # As for the sync drivers: Windows socket handles are not file descriptors.
        has_fd=sys.platform != "win32",
        own_runtime=False,
        connected_udp=adapter.connected_udp,
        finalizers=[adapter.close],
    )


def load_driver(driver_id: str) -> DriverUnderTest:
    """The driver behind ``driver_id``; ``pytest.skip`` with the reason when it cannot run here."""
    if driver_id.startswith("aio-"):
        return _aio_driver(driver_id.removeprefix("aio-"))
    return _sync_driver(driver_id)


def open_fd_count() -> int | None:
    """Descriptors open in this process (Linux /proc, BSD/macOS /dev/fd), None where unknown."""
    for path in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return len(os.listdir(path))
    return None


@dataclass(frozen=True)
class Received:
    """One received datagram, copied out of its slot."""

    payload: bytes
    address: SocketAddress | None
    truncated: bool
    original_length: int


class Net:
    """One example's world: a driver, its runtime, everything opened, and bounded waiting."""

    def __init__(self, dut: DriverUnderTest) -> None:
        self.dut = dut
        self.driver = dut.make_driver()
        self.runtime: Runtime = self.driver.runtime()
        self._owned: list[_Closeable] = []
        self._tokens: dict[int, tuple[Pollable, Token, Interest]] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Net:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Deregister and close everything, then the runtime (never raises for a closed one)."""
        for source, _, _ in list(self._tokens.values()):
            self.forget(source)
        while self._owned:
            self._owned.pop().close()
        self.runtime.close()

    def own(self, thing: T) -> T:
        """Close ``thing`` when the example ends."""
        self._owned.append(thing)  # type: ignore[arg-type]
        return thing

    def forget(self, source: Pollable) -> None:
        """Deregister ``source`` if this net registered it (before closing it)."""
        entry = self._tokens.pop(id(source), None)
        if entry is not None and not self.runtime.closed:
            self.runtime.deregister(entry[1])

    def close_source(self, source: Pollable) -> None:
        """Deregister, then close ``source``."""
        self.forget(source)
        source.close()  # type: ignore[attr-defined]

    # -- opening ------------------------------------------------------------------------------

    def udp(self, address: AddressLike = "127.0.0.1:0", config: NetConfig | None = None) -> UdpSocket:
        """A bound UDP socket, closed at the end of the example."""
        return self.own(self.driver.bind_udp(address, config))

    def listener(
        self, address: AddressLike = "127.0.0.1:0", config: NetConfig | None = None
    ) -> TcpListener:
        """A listening TCP socket, closed at the end of the example."""
        return self.own(self.driver.bind_tcp(address, config))

    def tcp_pair(
        self, address: AddressLike = "127.0.0.1:0", config: NetConfig | None = None
    ) -> tuple[TcpStream, TcpStream]:
        """(client, server): a connected pair, both closed at the end of the example."""
        listener = self.listener(address, config)
        client = self.own(self.driver.connect_tcp(listener.local_address, config))
        server, _ = self.retry(listener.accept_nonblocking, listener, Interest.READABLE, "accept")
        self.own(server)
        self.until(client.finish_connect, client, Interest.WRITABLE, "finish_connect")
        self.close_source(listener)
        return client, server

    # -- waiting ------------------------------------------------------------------------------

    def wait(self, source: Pollable, interest: Interest, timeout: float = POLL_STEP) -> bool:
        """Poll the driver's runtime (at most ``timeout``) until ``source`` is ready for ``interest``."""
        entry = self._tokens.get(id(source))
        if entry is None:
            token = self.runtime.register(source, interest)
            self._tokens[id(source)] = (source, token, interest)
        else:
            token = entry[1]
            if entry[2] != interest:
                self.runtime.reregister(token, interest)
                self._tokens[id(source)] = (source, token, interest)
        deadline = time.monotonic() + timeout
        for _ in range(MAX_ROUNDS):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for event in self.runtime.poll_once(min(remaining, POLL_STEP)):
                if event.token == token and event.readiness & (
                    Readiness(int(interest)) | Readiness.ERROR | Readiness.HANGUP
                ):
                    return True
        return False

    def retry(
        self,
        operation: Callable[[], T],
        source: Pollable,
        interest: Interest,
        what: str,
        *,
        timeout: float = WAIT_LIMIT,
    ) -> T:
        """Call ``operation`` until it does not raise BlockingIOError, waiting through the runtime."""
        deadline = time.monotonic() + timeout
        for _ in range(MAX_ROUNDS):
            try:
                return operation()
            except BlockingIOError:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.wait(source, interest, min(remaining, POLL_STEP * 4))
        raise AssertionError(f"{self.dut.id}: {what} still would block after {timeout} s")

    def until(
        self,
        predicate: Callable[[], bool],
        source: Pollable,
        interest: Interest,
        what: str,
        *,
        timeout: float = WAIT_LIMIT,
    ) -> None:
        """Wait through the runtime until ``predicate()`` is true (bounded)."""

        def check() -> None:
            if not predicate():
                raise BlockingIOError

        self.retry(check, source, interest, what, timeout=timeout)

    def settle(self, rounds: int = 3) -> None:
        """Give in-flight traffic a chance to land (zero-wait polls; the sim advances a little)."""
        step = POLL_STEP if self.dut.virtual_time else 0.0
        for _ in range(rounds):
            self.runtime.poll_once(step)

    # -- datagrams ----------------------------------------------------------------------------

    def receive(self, sock: UdpSocket, batch: Batch, expected: int) -> list[Received]:
        """Receive exactly ``expected`` datagrams through ``recv_batch`` (checking each batch)."""
        got: list[Received] = []
        for _ in range(MAX_ROUNDS):
            if len(got) >= expected:
                break
            n = self.retry(lambda: sock.recv_batch(batch), sock, Interest.READABLE, "recv_batch")
            assert 1 <= n <= batch.capacity, f"recv_batch returned {n} for capacity {batch.capacity}"
            assert n == len(batch), f"recv_batch returned {n} but the batch holds {len(batch)}"
            got.extend(
                Received(bytes(d.payload), d.address, d.truncated, d.original_length) for d in batch
            )
            batch.release()
            batch.pool.check_invariants()
        assert len(got) == expected, f"expected {expected} datagrams, received {len(got)}"
        return got

