"""The driver contract: the protocols every driver implements, sync and async.

Rules this module obeys:

* It declares behaviour only; drivers implement it and ``tests/contract`` checks it for every driver.
* Every sync driver has a ``Runtime.poll_once(timeout)`` step, so a test (or a user's own loop) can drive
  it one step at a time.
* Would-block is ``BlockingIOError``; a closed socket raises :class:`~horizon_core.errors.SocketClosedError`
  (an ``OSError`` with errno EBADF); neither ever crashes the interpreter.

Example (any sync driver)::

    from horizon_core import BufferPool, NetConfig
    from horizon_drivers import portable as driver

    with driver.bind_udp("127.0.0.1:0", NetConfig()) as sock:
        batch = BufferPool(64, 2048).batch(64)
        try:
            n = sock.recv_batch(batch)
        except BlockingIOError:
            n = 0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Protocol, Self, TypeAlias, runtime_checkable

from horizon_core.addresses import SocketAddress
from horizon_core.buffers import Batch
from horizon_core.config import NetConfig
from horizon_core.events import Event, Interest
from horizon_core.options import OptionReport
from horizon_core.slab import Token
from horizon_core.stats import StatsSnapshot

__all__ = [
    "AddressLike",
    "AsyncTcpListener",
    "AsyncTcpStream",
    "AsyncUdpSocket",
    "BytesLike",
    "Datagrams",
    "OutgoingDatagrams",
    "Driver",
    "Pollable",
    "Runtime",
    "TcpListener",
    "TcpStream",
    "UdpSocket",
    "WritableBuffer",
]

#: Anything a driver accepts as an address: a SocketAddress, a ``(host, port)`` tuple of an IP literal,
#: or ``"host:port"`` / ``"[v6]:port"`` text. Names are not resolved by sync drivers.
AddressLike: TypeAlias = SocketAddress | tuple[str, int] | str
BytesLike: TypeAlias = bytes | bytearray | memoryview
WritableBuffer: TypeAlias = bytearray | memoryview
#: What ``send_batch`` takes: a Batch of FILLED slots, or ``(payload, address)`` pairs.
Datagrams: TypeAlias = Batch | Iterable[tuple[BytesLike, AddressLike]]
#: What a driver's ``send_batch`` also takes: ``Datagrams`` whose address may be None, meaning
#: the connected peer (the one alias for it; the contract itself only promises ``Datagrams``).
OutgoingDatagrams: TypeAlias = Batch | Iterable[tuple[BytesLike, AddressLike | None]]


@runtime_checkable
class Pollable(Protocol):
    """Something a Runtime can watch.

    Example::

        token = runtime.register(sock, Interest.READABLE)   # any object with fileno()
    """

    def fileno(self) -> int:
        """The OS descriptor (``-1`` for drivers without one, such as ``sim``)."""
        ...


class _Closeable(Protocol):
    @property
    def closed(self) -> bool:
        """True once ``close()`` ran."""
        ...

    def close(self) -> None:
        """Release the socket. Idempotent."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _SocketInfo(Protocol):
    """What every socket, sync or async, tells without I/O: its options and its own address."""

    @property
    def options(self) -> OptionReport:
        """What the config asked for and what the kernel did with it.

        Accepted TCP streams report the listener's config, as applied to them.
        """
        ...

    @property
    def local_address(self) -> SocketAddress:
        """This end's bound address (with the port the kernel chose for port 0)."""
        ...


class _UdpInfo(_SocketInfo, Protocol):
    """What every UDP socket, sync or async, tells without I/O: also its counters."""

    @property
    def stats(self) -> StatsSnapshot:
        """Counters and batch-size histograms since the socket opened."""
        ...


@runtime_checkable
class UdpSocket(Pollable, _Closeable, _UdpInfo, Protocol):
    """A nonblocking UDP socket with batch receive and send.

    Example (echo one batch)::

        n = sock.recv_batch(batch)       # BlockingIOError if nothing waits
        sent = sock.send_batch(batch)    # back to each sender, no address decoding
        batch.release()
    """

    def recv_batch(self, batch: Batch) -> int:
        """Receive up to ``batch.capacity`` datagrams in one call; return how many.

        The batch must be empty (``release()`` it first). Raises ``BlockingIOError`` when nothing is
        waiting. Truncated datagrams are flagged with their true length.
        """
        ...

    def send_batch(self, datagrams: Datagrams, start: int = 0) -> int:
        """Send datagrams ``start..`` in one call; return how many went (a partial send is not an error)."""
        ...

    def send_to(self, data: BytesLike, address: AddressLike) -> int:
        """Send one datagram to ``address``; return its length."""
        ...

    def recv_from(self, buffer: WritableBuffer) -> tuple[int, SocketAddress]:
        """Receive one datagram into ``buffer``; return (bytes stored, sender)."""
        ...

    def connect(self, address: AddressLike) -> None:
        """Fix the peer: ``send``/``recv_into`` then use it and ICMP errors are reported."""
        ...

    def send(self, data: BytesLike) -> int:
        """Send one datagram to the connected peer."""
        ...

    def recv_into(self, buffer: WritableBuffer) -> int:
        """Receive one datagram from the connected peer into ``buffer``."""
        ...


@runtime_checkable
class TcpStream(Pollable, _Closeable, _SocketInfo, Protocol):
    """A nonblocking TCP connection.

    Example::

        stream = driver.connect_tcp("127.0.0.1:7000", NetConfig())
        while not stream.finish_connect():
            runtime.poll_once(0.1)
        stream.send(b"hello")
    """

    @property
    def peer_address(self) -> SocketAddress:
        """The other end's address."""
        ...

    def finish_connect(self) -> bool:
        """True once connected, False while a nonblocking connect is in progress; raises its error."""
        ...

    def recv_into(self, buffer: WritableBuffer) -> int:
        """Read into ``buffer``; 0 means the peer closed its write side. Raises BlockingIOError,
        ConnectionResetError on a reset."""
        ...

    def send(self, data: BytesLike) -> int:
        """Write what the kernel takes now; return how many bytes (may be fewer than given)."""
        ...

    def send_vectored(self, buffers: Sequence[BytesLike]) -> int:
        """Write several buffers in one call (sendmsg/WSASend); return the bytes taken."""
        ...

    def shutdown_write(self) -> None:
        """Half close: the peer reads end-of-stream, this end can still read."""
        ...


@runtime_checkable
class TcpListener(Pollable, _Closeable, _SocketInfo, Protocol):
    """A nonblocking listening TCP socket.

    Example::

        stream, peer = listener.accept_nonblocking()   # configured and nonblocking
    """

    def accept_nonblocking(self) -> tuple[TcpStream, SocketAddress]:
        """Accept one connection as a nonblocking, configured stream; BlockingIOError if none waits."""
        ...


@runtime_checkable
class Runtime(_Closeable, Protocol):
    """A readiness loop over registered sockets, keyed by generational tokens.

    Example::

        token = runtime.register(sock, Interest.READABLE)
        for event in runtime.poll_once(0.5):
            assert event.token == token and event.readable
        runtime.deregister(token)   # no event for token from now on
    """

    def register(self, source: Pollable, interest: Interest) -> Token:
        """Watch ``source``; events for it carry the returned token."""
        ...

    def reregister(self, token: Token, interest: Interest) -> None:
        """Change what a registered source is watched for."""
        ...

    def deregister(self, token: Token) -> None:
        """Stop watching; no event for ``token`` is ever delivered after this returns."""
        ...

    def poll_once(self, timeout: float | None = None) -> list[Event]:
        """Wait up to ``timeout`` seconds (None: until something is ready) and return the events."""
        ...

    def run(self, handler: Callable[[Event], object], *, timeout: float | None = None) -> None:
        """Call ``handler`` for each event until ``stop()``; ``timeout`` bounds each wait."""
        ...

    def stop(self) -> None:
        """Make ``run`` return after the current step. Safe from any thread; no-op once closed."""
        ...

    def wake(self) -> None:
        """Interrupt a blocked ``poll_once`` from any thread."""
        ...

    def __contains__(self, token: object) -> bool:
        """True while ``token`` is registered (False once deregistered or closed)."""
        ...


@runtime_checkable
class Driver(Protocol):
    """A factory for one driver's sockets and runtime: what the contract suite is parametrized over.

    Example::

        from horizon_drivers.native import DRIVER
        sock = DRIVER.bind_udp("127.0.0.1:0", NetConfig.low_latency())
    """

    @property
    def name(self) -> str:
        """Short name used on the command line (``native``, ``portable``, ``sim``...)."""
        ...

    def bind_udp(self, address: AddressLike, config: NetConfig | None = None) -> UdpSocket:
        """Open a UDP socket with ``config``'s options and bind it."""
        ...

    def bind_udp_dual_stack(self, port: int, config: NetConfig | None = None) -> UdpSocket:
        """Bind ``[::]:port`` with IPV6_V6ONLY off, serving IPv4 and IPv6."""
        ...

    def bind_tcp(self, address: AddressLike, config: NetConfig | None = None) -> TcpListener:
        """Open, configure, bind and listen (backlog from ``config.tcp_backlog``)."""
        ...

    def connect_tcp(self, address: AddressLike, config: NetConfig | None = None) -> TcpStream:
        """Start a nonblocking connect; see ``TcpStream.finish_connect``."""
        ...

    def runtime(self, config: NetConfig | None = None) -> Runtime:
        """A new Runtime for this driver's sockets."""
        ...


@runtime_checkable
class AsyncUdpSocket(_UdpInfo, Protocol):
    """The async twin of UdpSocket: waits instead of raising BlockingIOError.

    Example::

        n = await sock.receive_batch(batch)
        await sock.send_batch(batch)
        batch.release()
    """

    async def receive_batch(self, batch: Batch) -> int:
        """Wait until at least one datagram is waiting, then receive up to the batch's capacity."""
        ...

    async def send_batch(self, datagrams: Datagrams, start: int = 0) -> int:
        """Wait until writable, then send as many as the kernel takes; return how many."""
        ...

    async def aclose(self) -> None:
        """Close; a receive waiting in another task fails with anyio.ClosedResourceError."""
        ...


@runtime_checkable
class AsyncTcpStream(Protocol):
    """The async twin of TcpStream, shaped like anyio's SocketStream.

    Example::

        await stream.send(b"ping")
        reply = await stream.receive()
    """

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Wait for bytes; anyio.EndOfStream after the peer's half close."""
        ...

    async def send(self, item: bytes) -> None:
        """Send all of ``item``."""
        ...

    async def send_eof(self) -> None:
        """Half close."""
        ...

    async def aclose(self) -> None:
        """Close the stream."""
        ...


@runtime_checkable
class AsyncTcpListener(Protocol):
    """The async twin of TcpListener.

    Example::

        stream = await listener.accept()
    """

    async def accept(self) -> AsyncTcpStream:
        """Wait for and accept one connection."""
        ...

    async def aclose(self) -> None:
        """Stop listening."""
        ...
