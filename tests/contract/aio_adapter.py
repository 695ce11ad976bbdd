"""The anyio driver seen through the sync contract, so the one suite checks it on asyncio and trio.

The adapter runs an anyio event loop (asyncio or trio) in a thread through a
:class:`anyio.from_thread.BlockingPortal` and presents :mod:`horizon_drivers.aio`'s objects as the
sync :class:`~horizon_core.contract.Driver`. Every translation is stated here, because each one is
part of what the suite then checks for the async driver:

* **waiting.** The async calls wait instead of raising ``BlockingIOError``. The adapter gives each
  receive or accept a short grace period (:data:`GRACE`); if nothing arrived, the call was
  cancelled while waiting and the adapter raises ``BlockingIOError``. So "nothing waiting raises
  BlockingIOError" becomes, for the async driver, "a receive waits, and a cancelled wait loses
  nothing" (the next receive still gets every datagram and byte). Sends wait for writability for at
  most the grace period, then send at most :data:`SEND_CHUNK` bytes, which a writable TCP socket
  always takes, so a send never blocks the suite's single thread.
* **errors.** ``anyio.ClosedResourceError`` (the async driver's documented error for a closed
  object) becomes :class:`~horizon_core.errors.SocketClosedError`; ``anyio.BrokenResourceError``
  whose cause is an OSError becomes that OSError (ConnectionResetError, ConnectionRefusedError...);
  ``anyio.EndOfStream`` becomes a read of 0. Anything else passes through unchanged.
* **connects** complete inside ``connect_tcp`` (anyio's ``connect_tcp`` awaits the handshake), so
  ``finish_connect`` is always True and a refused connect raises from ``connect_tcp`` itself.
* **runtime.** The anyio driver has no Runtime: anyio's event loop is its runtime. The adapter's
  ``Runtime`` only paces the suite's retry loops (it reports every registered source ready, a
  spurious readiness that readiness semantics allow); the runtime properties are not run for it.
* **connected UDP** is a separate socket type in anyio (``create_connected_udp_socket``), so
  ``UdpSocket.connect`` is not offered; those properties are skipped with that reason.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import anyio
import anyio.from_thread
from anyio.abc import SocketAttribute

from horizon_core.addresses import SocketAddress, as_socket_address
from horizon_core.buffers import Batch
from horizon_core.config import NetConfig, resolve_config
from horizon_core.contract import AddressLike, BytesLike, Datagrams, Pollable, WritableBuffer
from horizon_core.errors import SocketClosedError
from horizon_core.events import Event, Interest, Readiness
from horizon_core.options import OptionReport
from horizon_core.slab import Slab, Token
from horizon_core.stats import StatsSnapshot

__all__ = ["GRACE", "SEND_CHUNK", "AdapterUnavailableError", "AioAdapterDriver"]

T = TypeVar("T")

#: How long a receive, accept or send may wait before the adapter calls it would-block (seconds).
GRACE: Final = 0.02
#: The most a TCP send offers at once; a writable socket always has room for it.
SEND_CHUNK: Final = 16384


class AdapterUnavailableError(Exception):
    """The anyio driver or the requested backend cannot run here."""


def _no_connected_udp(what: str) -> NotImplementedError:
    return NotImplementedError(
        f"{what}: the anyio driver's connected UDP is a separate socket type "
        "(create_connected_udp_socket), not UdpSocket.connect"
    )


class _Bridge:
    """Runs coroutines on the portal and translates anyio's errors to the sync contract's."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal) -> None:
        self.portal = portal

    def call(
        self, what: str, operation: str, func: Callable[..., Awaitable[T]], *args: object
    ) -> T:
        try:
            return self.portal.call(func, *args)
        except anyio.ClosedResourceError as exc:
            raise SocketClosedError(what, operation) from exc
        except anyio.BrokenResourceError as exc:
            if isinstance(exc.__cause__, OSError):
                raise exc.__cause__ from exc
            raise

    async def within_grace(self, func: Callable[..., Awaitable[T]], *args: object) -> T:
        with anyio.move_on_after(GRACE):
            return await func(*args)
        raise BlockingIOError(errno.EAGAIN, f"nothing within the adapter's {GRACE} s grace")


class _AdaptedUdp:
    _what = "UDP socket"

    def __init__(self, bridge: _Bridge, sock: Any) -> None:
        self._bridge = bridge
        self._sock = sock
        self._fd = sock.extra(SocketAttribute.raw_socket).fileno()
        self._closed = False

    def _call(self, operation: str, func: Callable[..., Awaitable[T]], *args: object) -> T:
        return self._bridge.call(self._what, operation, func, *args)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._bridge.portal.call(self._sock.aclose)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def fileno(self) -> int:
        return -1 if self._closed else self._fd

    @property
    def options(self) -> OptionReport:
        report: OptionReport = self._sock.options
        return report

    @property
    def local_address(self) -> SocketAddress:
        address: SocketAddress = self._sock.local_address
        return address

    @property
    def stats(self) -> StatsSnapshot:
        snapshot: StatsSnapshot = self._sock.stats
        return snapshot

    def recv_batch(self, batch: Batch) -> int:
        n: int = self._call("recv_batch", self._bridge.within_grace, self._sock.receive_batch, batch)
        return n

    def send_batch(self, datagrams: Datagrams, start: int = 0) -> int:
        n: int = self._call("send_batch", self._sock.send_batch, datagrams, start)
        return n

    def send_to(self, data: BytesLike, address: AddressLike) -> int:
        target = as_socket_address(address)
        payload = bytes(data)
        self._call("send_to", self._sock.sendto, payload, str(target.host), target.port)
        return len(payload)

    def recv_from(self, buffer: WritableBuffer) -> tuple[int, SocketAddress]:
        data, (host, port) = self._call(
            "recv_from", self._bridge.within_grace, self._sock.receive
        )
        n = min(len(data), len(buffer))
        buffer[:n] = data[:n]
        return n, SocketAddress.from_sockaddr((host, port))

    def connect(self, address: AddressLike) -> None:
        if self._closed:
            raise SocketClosedError(self._what, "connect")
        raise _no_connected_udp("connect")

    def send(self, data: BytesLike) -> int:
        if self._closed:
            raise SocketClosedError(self._what, "send")
        raise _no_connected_udp("send")

    def recv_into(self, buffer: WritableBuffer) -> int:
        if self._closed:
            raise SocketClosedError(self._what, "recv_into")
        raise _no_connected_udp("recv_into")


class _AdaptedStream:
    _what = "TCP stream"

    def __init__(self, bridge: _Bridge, stream: Any) -> None:
        self._bridge = bridge
        self._stream = stream
        self._raw: socket.socket = stream.extra(SocketAttribute.raw_socket)
        self._fd = self._raw.fileno()
        self._closed = False

    def _call(self, operation: str, func: Callable[..., Awaitable[T]], *args: object) -> T:
        return self._bridge.call(self._what, operation, func, *args)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._bridge.portal.call(self._stream.aclose)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def fileno(self) -> int:
        return -1 if self._closed else self._fd

    @property
    def options(self) -> OptionReport:
        report: OptionReport = self._stream.options
        return report

    @property
    def local_address(self) -> SocketAddress:
        address: SocketAddress = self._call("local_address", self._attribute, "local_address")
        return address

    @property
    def peer_address(self) -> SocketAddress:
        address: SocketAddress = self._call("peer_address", self._attribute, "peer_address")
        return address

    async def _attribute(self, name: str) -> Any:
        return getattr(self._stream, name)

    def finish_connect(self) -> bool:
        if self._closed:
            raise SocketClosedError(self._what, "finish_connect")
        return True

    async def _receive(self, size: int) -> bytes:
        try:
            data: bytes = await self._bridge.within_grace(self._stream.receive, size)
        except anyio.EndOfStream:
            return b""
        return data

    def recv_into(self, buffer: WritableBuffer) -> int:
        data = self._call("recv_into", self._receive, max(1, len(buffer)))
        buffer[: len(data)] = data
        return len(data)

    async def _send_some(self, data: bytes) -> int:
        if self._raw.fileno() >= 0:  # once closed, the driver's own send must say so
            writable = False
            with anyio.move_on_after(GRACE):
                await anyio.wait_writable(self._raw)
                writable = True
            if not writable:
                raise BlockingIOError(errno.EAGAIN, "not writable within the adapter's grace")
        await self._stream.send(data)
        return len(data)

    def send(self, data: BytesLike) -> int:
        chunk = bytes(memoryview(data)[:SEND_CHUNK])
        if not chunk:
            return 0
        return self._call("send", self._send_some, chunk)

    def send_vectored(self, buffers: Sequence[BytesLike]) -> int:
        return self.send(b"".join(bytes(b) for b in buffers))

    def shutdown_write(self) -> None:
        self._call("shutdown_write", self._stream.send_eof)


class _AdaptedListener:
    _what = "TCP listener"

    def __init__(self, bridge: _Bridge, multi: Any) -> None:
        self._bridge = bridge
        self._multi = multi
        self._listener = multi.listeners[0]
        self._fd = self._listener.extra(SocketAttribute.raw_socket).fileno()
        self._local: SocketAddress = self._listener.local_address
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._bridge.portal.call(self._multi.aclose)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def fileno(self) -> int:
        return -1 if self._closed else self._fd

    @property
    def options(self) -> OptionReport:
        report: OptionReport = self._listener.options
        return report

    @property
    def local_address(self) -> SocketAddress:
        return self._local

    def accept_nonblocking(self) -> tuple[_AdaptedStream, SocketAddress]:
        stream = self._bridge.call(
            self._what, "accept", self._bridge.within_grace, self._listener.accept
        )
        adapted = _AdaptedStream(self._bridge, stream)
        return adapted, adapted.peer_address


class _PacingRuntime:
    """Not a readiness loop: reports every registered source ready (see the module docstring)."""

    def __init__(self) -> None:
        self._slab: Slab[list[Interest]] = Slab()  # one mutable cell per registration
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def register(self, source: Pollable, interest: Interest) -> Token:
        return self._slab.insert([interest])

    def reregister(self, token: Token, interest: Interest) -> None:
        self._slab.get(token)[0] = interest

    def deregister(self, token: Token) -> None:
        self._slab.remove(token)

    def poll_once(self, timeout: float | None = None) -> list[Event]:
        time.sleep(min(timeout or 0.0, 0.001))
        return [Event(token, Readiness(int(cell[0]))) for token, cell in self._slab.items()]

    def run(self, handler: Callable[[Event], object], *, timeout: float | None = None) -> None:
        raise NotImplementedError("the anyio driver's runtime is anyio's event loop")

    def stop(self) -> None:
        """Nothing runs."""

    def wake(self) -> None:
        """Nothing blocks."""

    def __contains__(self, token: object) -> bool:
        return token in self._slab


class AioAdapterDriver:
    """horizon_drivers.aio on one anyio backend, as a sync Driver (for the contract suite)."""

    connected_udp = False

    def __init__(self, backend: str) -> None:
        try:
            from horizon_drivers import aio
        except ImportError as exc:
            raise AdapterUnavailableError(f"horizon_drivers.aio does not import: {exc}") from exc
        self._aio = aio
        self.name = f"aio-{backend}"
        self._stack = contextlib.ExitStack()
        try:
            portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal(backend))
        except Exception as exc:
            raise AdapterUnavailableError(f"anyio cannot start the {backend} backend: {exc}") from exc
        self._bridge = _Bridge(portal)

    def close(self) -> None:
        """Stop the event-loop thread."""
        self._stack.close()

    def _open(self, func: Callable[..., Awaitable[T]], *args: object, **kwargs: object) -> T:
        async def opener() -> T:
            return await func(*args, **kwargs)

        return self._bridge.call("socket", "open", opener)

    def bind_udp(self, address: AddressLike, config: NetConfig | None = None) -> _AdaptedUdp:
        local = as_socket_address(address)
        sock = self._open(
            self._aio.create_udp_socket,
            local_host=str(local.host),
            local_port=local.port,
            config=config,
        )
        return _AdaptedUdp(self._bridge, sock)

    def bind_udp_dual_stack(self, port: int, config: NetConfig | None = None) -> _AdaptedUdp:
        from horizon_drivers.opening import dual_stack_config

        sock = self._open(
            self._aio.create_udp_socket,
            config=dual_stack_config(resolve_config(config)),
            family=socket.AF_INET6,
            local_host="::",
            local_port=port,
        )
        return _AdaptedUdp(self._bridge, sock)

    def bind_tcp(self, address: AddressLike, config: NetConfig | None = None) -> _AdaptedListener:
        local = as_socket_address(address)
        multi = self._open(
            self._aio.create_tcp_listener,
            local_host=str(local.host),
            local_port=local.port,
            config=config,
        )
        return _AdaptedListener(self._bridge, multi)

    def connect_tcp(self, address: AddressLike, config: NetConfig | None = None) -> _AdaptedStream:
        target = as_socket_address(address)
        try:
            stream = self._open(self._aio.connect_tcp, str(target.host), target.port, config=config)
        except OSError as exc:
            # anyio's shape: OSError("All connection attempts failed") from the attempt's own
            # error. The sync contract names the attempt's error (ConnectionRefusedError...).
            if isinstance(exc.__cause__, OSError):
                raise exc.__cause__ from exc
            raise
        return _AdaptedStream(self._bridge, stream)

    def runtime(self, config: NetConfig | None = None) -> _PacingRuntime:
        return _PacingRuntime()
