"""TCP for anyio apps: anyio's SocketStream and SocketListener, with every NetConfig option applied.

Rules this module obeys:

* Connecting sockets get the config before ``connect()``; listeners before ``bind()``; accepted
  streams right after ``accept()`` (nonblocking, nodelay/quickack/buffers/tos): the reference
  library returned accepted streams blocking and unconfigured. Each object's
  :class:`~horizon_core.options.OptionReport` is ``extra(HorizonAttribute.options)``.
* anyio semantics: ``EndOfStream`` after the peer's half close, ``ClosedResourceError`` after
  ``aclose()`` (also in a task waiting when another task closed the stream),
  ``BrokenResourceError`` (OSError as ``__cause__``) on a reset, ``BusyResourceError`` on a second
  concurrent receive, send or accept.
* Every call tries the kernel first and waits only when it would block. A stream waits through
  :mod:`horizon_drivers.aio.readiness` (on asyncio and uvloop its reader stays registered with
  the loop between waits: no ``epoll_ctl`` per wait; on trio ``trio.lowlevel``'s waits); a
  listener and a connect through :func:`anyio.wait_readable` / :func:`anyio.wait_writable`. Each
  call checkpoints first and never awaits after taking bytes or a connection from the kernel, so
  a cancelled receive or accept has taken nothing (:mod:`horizon_drivers.aio.checkpoints`). A
  receive right after a nowait read found nothing takes its checkpoint as the wait for
  readability (the read would only block).
* The factories are anyio's (:func:`anyio.connect_tcp`, :func:`anyio.create_tcp_listener`):
  same parameters, order, defaults, happy-eyeballs order, listeners and error shapes; the config
  is keyword-only and combines with anyio's defaults as :mod:`horizon_drivers.aio.defaults` says.
* :meth:`HorizonSocketStream.receive_into` reads into the caller's buffer (no allocation) with
  ``receive``'s semantics: ``EndOfStream`` at the end, never 0; ``ValueError`` for an empty
  buffer.
* :meth:`HorizonSocketStream.receive_into_nowait` and :meth:`~HorizonSocketStream.send_nowait`
  move what the kernel has or takes right now and raise ``anyio.WouldBlock`` otherwise, like
  anyio's memory streams' ``*_nowait``. They are not checkpoints: anyio's own methods each cost
  one trip through the event loop (a ``select(0)`` on asyncio), which a loop that drains a busy
  socket need not pay per read; it awaits the waiting methods when the socket runs dry, and a
  checkpoint now and then.

Example::

    import anyio
    from anyio.abc import SocketAttribute
    from horizon_core import NetConfig
    from horizon_drivers.aio import connect_tcp, create_tcp_listener

    async def main() -> None:
        async with await create_tcp_listener(local_host="127.0.0.1", config=NetConfig()) as listener:
            port = listener.extra(SocketAttribute.local_port)
            async with await connect_tcp("127.0.0.1", port, config=NetConfig()) as client:
                server = await listener.accept()
                await client.send(b"hello")
                print(await server.receive())
                await server.aclose()

    anyio.run(main)
"""

from __future__ import annotations

import errno
import math
import os
import socket
import ssl
import sys
from typing import Final, Literal, NoReturn, overload

import anyio
import anyio.lowlevel
import attrs
from anyio import (
    ClosedResourceError,
    EndOfStream,
    ResourceGuard,
    WouldBlock,
)
from anyio.abc import SocketListener, SocketStream
from anyio.streams.stapled import MultiListener
from anyio.streams.tls import TLSStream

from horizon_core.addresses import SocketAddress
from horizon_core.config import NetConfig
from horizon_core.contract import WritableBuffer
from horizon_core.options import OptionReport
from horizon_drivers.aio.defaults import ANYIO_BACKLOG, anyio_config, listen_backlog
from horizon_drivers.aio.nonblocking import NonblockingSocket
from horizon_drivers.aio.readiness import Readiness, readiness_for_running_loop
from horizon_drivers.aio.resolution import (
    AnyIPAddressFamily,
    IPAddressType,
    Resolved,
    address_of,
    ip_literal,
    lookup,
    wildcard,
)
from horizon_drivers.opening import configure_accepted, open_tcp_listener, open_tcp_stream

__all__ = [
    "HorizonSocketListener",
    "HorizonSocketStream",
    "connect_tcp",
    "create_tcp_listener",
]


# accept(2): errors that concern the connection being accepted, not the listener. Linux passes
# pending network errors of the new socket through accept; the next accept may well succeed.
_ACCEPT_RETRY: Final = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "EPERM",
    )
    if hasattr(errno, name)
)


#: Types whose len() is their size in bytes (anything else is measured through a memoryview).
_BYTE_SIZED: Final = (bytes, bytearray)


def _nothing_read(buffer: WritableBuffer) -> NoReturn:
    """A read into ``buffer`` returned 0: the end of the stream, or a buffer with no room
    (checked only then, so a read that got bytes pays nothing for it)."""
    if memoryview(buffer).nbytes == 0:
        raise ValueError("buffer must not be empty")
    raise EndOfStream


class HorizonSocketStream(NonblockingSocket, SocketStream):
    """A TCP connection: :class:`anyio.abc.SocketStream` opened with a NetConfig.

    Created by :func:`connect_tcp` or :meth:`HorizonSocketListener.accept`.

    Example::

        async with await connect_tcp("127.0.0.1", 8080, config=NetConfig()) as stream:
            await stream.send(b"GET / HTTP/1.0\\r\\n\\r\\n")
            print(await stream.receive())
            print(stream.extra(HorizonAttribute.options)["TCP_NODELAY"].effective)
    """

    def __init__(self, sock: socket.socket, report: OptionReport, config: NetConfig) -> None:
        super().__init__(sock, report, config)
        self._receive_guard = ResourceGuard("reading from")
        # Set when a read found nothing, or less than it asked for (the kernel had no more):
        # the next waiting receive then waits for readability first (that wait is its
        # checkpoint) instead of taking a checkpoint and repeating a read that would most
        # likely block. Level-triggered readiness makes it safe: bytes that arrived after the
        # short read make the wait return at once.
        self._drained = False
        self._send_guard = ResourceGuard("writing to")
        self._readiness: Readiness = readiness_for_running_loop(sock)

    def _notify_closing(self) -> None:
        try:
            self._readiness.close()
        finally:
            # Anyone else waiting on the raw socket through anyio is woken too.
            anyio.notify_closing(self._sock)

    @property
    def peer_address(self) -> SocketAddress:
        """The other end's address."""
        if self._closed:
            raise ClosedResourceError
        return SocketAddress.from_sockaddr(self._sock.getpeername())

    def _note_short_read(self, buffer: WritableBuffer, count: int) -> None:
        # len() counts items, never more than the bytes: a read judged short is short. A buffer
        # with no len() (a 0-dimensional view) is never judged short, so it only loses the saving.
        try:
            self._drained = count < len(buffer)
        except TypeError:
            self._drained = False

    async def _first_wait(self) -> None:
        """A receive's one checkpoint, before it reads: a wait for readability right after a
        read found nothing or less than it asked for (unless the config spins), a plain
        checkpoint otherwise. Either way nothing has been read yet, so a cancellation here loses
        nothing."""
        if self._drained:
            self._drained = False
            if self._spin_ns:
                # Spinning polls the socket (the read's BlockingIOError starts the spin) rather
                # than sleeping on it; the plain checkpoint is the receive's one checkpoint.
                await self._checkpoint()
                return
            # anyio delivers a task's cancellation of its own scope at its next checkpoint, but
            # never to a task whose awaited future is already done: a wait that a readable socket
            # completes in the same loop pass (uvloop) would read instead of raising. Where that
            # can happen, a cancelled scope shows as a deadline of -inf; then take the plain
            # checkpoint, which raises.
            readiness = self._readiness
            if readiness.raises_when_cancelled or anyio.current_effective_deadline() != -math.inf:
                await readiness.wait_readable()
                return
        await self._checkpoint()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Wait for bytes and return up to ``max_bytes``; EndOfStream after the peer's half close.

        The returned object holds only the bytes received (CPython shrinks ``recv``'s buffer in
        place); :meth:`receive_into` reads into a buffer of yours without allocating.

        Example::

            data = await stream.receive()
        """
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        with self._receive_guard:
            await self._first_wait()
            recv = self._sock.recv
            spinning = 0 if self._spin_ns else -1
            while True:
                if self._closed:
                    raise ClosedResourceError
                try:
                    data = recv(max_bytes)
                except BlockingIOError:
                    if spinning >= 0 and (spinning := await self._spin_step(spinning)) > 0:
                        continue
                    await self._readiness.wait_readable()
                    continue
                except OSError as exc:
                    raise self._translate(exc) from exc
                if not data:
                    raise EndOfStream
                self._drained = len(data) < max_bytes
                return data

    async def receive_into(self, buffer: WritableBuffer) -> int:
        """Wait for bytes, write them at the start of ``buffer``, return how many (at least 1).

        After a read shorter than its buffer (the kernel had no more), the next receive waits
        for readability before it reads, as libuv's readers do, instead of trying a read that
        would most likely fail; that wait is its checkpoint. This holds for :meth:`receive` and
        :meth:`receive_into_nowait` too.

        Like :meth:`receive` (``receive(len(buffer))``) without allocating: ``EndOfStream`` after
        the peer's half close, never 0; ``ValueError`` for an empty ``buffer`` (as
        ``receive(0)``); a cancelled call has written nothing. ``buffer`` is a writable
        C-contiguous buffer (bytearray, memoryview of one, array, mmap); its length in bytes is the most
        it takes. (Typed as bytearray | memoryview; any writable buffer works at run time.)

        Example::

            buffer = bytearray(65536)
            n = await stream.receive_into(buffer)
            await stream.send(memoryview(buffer)[:n])
        """
        with self._receive_guard:
            await self._first_wait()
            recv_into = self._sock.recv_into
            spinning = 0 if self._spin_ns else -1
            while True:
                if self._closed:
                    raise ClosedResourceError
                try:
                    count = recv_into(buffer)
                except BlockingIOError:
                    if spinning >= 0 and (spinning := await self._spin_step(spinning)) > 0:
                        continue
                    await self._readiness.wait_readable()
                    continue
                except OSError as exc:
                    raise self._translate(exc) from exc
                if not count:
                    _nothing_read(buffer)
                self._note_short_read(buffer, count)
                return count

    def receive_into_nowait(self, buffer: WritableBuffer) -> int:
        """What :meth:`receive_into` returns when bytes are waiting now; ``anyio.WouldBlock`` if not.

        Not a checkpoint: no scheduling point, no cancellation check, no allocation. It is for
        loops that move bytes while the kernel has them and await :meth:`receive_into` (which
        waits, and is a checkpoint) only once the socket runs dry, as the event loops' own
        protocol transports read. Such a loop must still await a checkpoint now and then, or a
        stream that never runs dry starves every other task. ``EndOfStream`` after the peer's
        half close; ``BusyResourceError`` while another task receives.

        Example::

            buffer = bytearray(262144)
            try:
                n = stream.receive_into_nowait(buffer)
            except anyio.WouldBlock:
                n = await stream.receive_into(buffer)
        """
        with self._receive_guard:
            if self._closed:
                raise ClosedResourceError
            try:
                count = self._sock.recv_into(buffer)
            except BlockingIOError:
                self._drained = True
                raise WouldBlock from None
            except OSError as exc:
                raise self._translate(exc) from exc
            if not count:
                _nothing_read(buffer)
            self._note_short_read(buffer, count)
            return count

    def send_nowait(self, item: bytes | bytearray | memoryview) -> int:
        """Hand the kernel what it takes of ``item`` now; return how many bytes (at least 1).

        ``anyio.WouldBlock`` when the send buffer is full (nothing was sent); 0 for an empty
        ``item``. Not a checkpoint, like :meth:`receive_into_nowait`: send the rest with
        :meth:`send`. ``BusyResourceError`` while another task sends.

        Example::

            try:
                sent = stream.send_nowait(data)
            except anyio.WouldBlock:
                sent = 0
            if sent < len(data):
                await stream.send(memoryview(data)[sent:])
        """
        with self._send_guard:
            if self._closed:
                raise ClosedResourceError
            try:
                return self._sock.send(item)
            except BlockingIOError:
                raise WouldBlock from None
            except OSError as exc:
                raise self._translate(exc) from exc

    async def send(self, item: bytes) -> None:
        """Send all of ``item``, waiting whenever the kernel's send buffer is full.

        ``item`` may be any bytes-like object (bytes, bytearray, memoryview...). A cancellation
        while waiting leaves a prefix sent, as with every anyio stream.

        Example::

            await stream.send(b"hello")
        """
        with self._send_guard:
            await self._checkpoint()
            send = self._sock.send
            # Usually the kernel takes everything at once: no memoryview at all. After a partial
            # write, one memoryview per call and an offset into it.
            pending: bytes | memoryview = item
            total = len(item) if type(item) in _BYTE_SIZED else memoryview(item).nbytes
            view: memoryview | None = None
            offset = 0
            while True:
                if self._closed:
                    raise ClosedResourceError
                try:
                    offset += send(pending)
                except BlockingIOError:
                    await self._readiness.wait_writable()
                    continue
                except OSError as exc:
                    raise self._translate(exc) from exc
                if offset >= total:
                    return
                if view is None:
                    view = memoryview(item).cast("B")
                pending = view[offset:]

    async def send_eof(self) -> None:
        """Half close: the peer reads end-of-stream; this end can still receive.

        Example::

            await stream.send_eof()
        """
        if self._closed:
            raise ClosedResourceError
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise self._translate(exc) from exc
        await anyio.lowlevel.checkpoint()


class HorizonSocketListener(NonblockingSocket, SocketListener):
    """A listening TCP socket: :class:`anyio.abc.SocketListener` whose streams are configured.

    Accepted streams are nonblocking and get the config's TCP_STREAM options (nodelay, quickack,
    buffers, tos) right after accept; their own report is ``extra(HorizonAttribute.options)``.

    Example::

        listener = (await create_tcp_listener(local_host="127.0.0.1")).listeners[0]
        stream = await listener.accept()
    """

    def __init__(self, sock: socket.socket, report: OptionReport, config: NetConfig) -> None:
        super().__init__(sock, report, config)
        self._accept_guard = ResourceGuard("accepting connections from")

    async def accept(self) -> HorizonSocketStream:
        """Wait for a connection; return it as a configured, nonblocking stream.

        Example::

            stream = await listener.accept()
        """
        with self._accept_guard:
            await self._checkpoint()
            conn, _address = await self._when_ready(self._sock.accept, anyio.wait_readable, _ACCEPT_RETRY)
            # configure_accepted closes the connection if a required option is refused.
            report = configure_accepted(conn, self._config)
            return HorizonSocketStream(conn, report, self._config)


async def _connect_one(
    address: SocketAddress, config: NetConfig, local: SocketAddress | None
) -> HorizonSocketStream:
    if local is not None and local.family != address.family:
        # An attempt's error like any other (anyio's backends fail such an attempt too).
        raise OSError(
            errno.EAFNOSUPPORT,
            f"cannot connect from {local} (IPv{local.family}) to {address} (IPv{address.family})",
        )
    sock, report = open_tcp_stream(address, config, local=local)
    try:
        # A nonblocking connect completes with writability; SO_ERROR holds its result.
        await anyio.wait_writable(sock)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            # OSError(errno, ...) builds the errno's subclass (ConnectionRefusedError...), as
            # the backends' own connects raise.
            raise OSError(code, f"connect to {address}: {os.strerror(code)}")
    except BaseException:
        sock.close()
        raise
    return HorizonSocketStream(sock, report, config)


async def _targets(
    remote_host: IPAddressType, remote_port: int, family: int
) -> list[SocketAddress]:
    """The addresses to try, in anyio's happy-eyeballs order."""
    literal = ip_literal(remote_host)
    if literal is not None:
        address, scope = literal
        await anyio.lowlevel.checkpoint()
        return [SocketAddress(address, remote_port, 0, scope)]
    answers = await lookup(remote_host, remote_port, family=family, kind=socket.SOCK_STREAM)
    # As anyio: the first IPv6 answer first, the first IPv4 answer second (only when an IPv6
    # one came before it), everything else in resolver order, repeats kept.
    ordered: list[SocketAddress] = []
    v6_found = v4_found = False
    for af, _kind, answer in answers:
        if af == socket.AF_INET6 and not v6_found:
            v6_found = True
            ordered.insert(0, answer)
        elif af == socket.AF_INET and not v4_found and v6_found:
            v4_found = True
            ordered.insert(1, answer)
        else:
            ordered.append(answer)
    return ordered


async def _happy_eyeballs(
    targets: list[SocketAddress], cfg: NetConfig, local: SocketAddress | None, delay: float
) -> HorizonSocketStream:
    """RFC 6555 as anyio does it; ``OSError("All connection attempts failed")`` when none connects."""
    errors: list[OSError] = []
    connected: HorizonSocketStream | None = None
    if len(targets) == 1:
        # One address needs no task group; the outcome and the error are anyio's.
        try:
            connected = await _connect_one(targets[0], cfg, local)
        except OSError as exc:
            errors.append(exc)
    else:

        async def attempt(address: SocketAddress, done: anyio.Event) -> None:
            nonlocal connected
            try:
                stream = await _connect_one(address, cfg, local)
            except OSError as exc:
                errors.append(exc)
                return
            else:
                if connected is None:
                    connected = stream
                    group.cancel_scope.cancel()
                else:
                    await stream.aclose()
            finally:
                done.set()

        try:
            async with anyio.create_task_group() as group:
                for address in targets:
                    done = anyio.Event()
                    group.start_soon(attempt, address, done)
                    with anyio.move_on_after(delay):
                        await done.wait()
        except BaseException:
            if connected is not None:
                await anyio.aclose_forcefully(connected)
            raise
    if connected is None:
        # Raised outside any except block, so __context__ stays None as with anyio.
        cause = (
            errors[0]
            if len(errors) == 1
            else ExceptionGroup("multiple connection attempts failed", errors)
        )
        raise OSError("All connection attempts failed") from cause
    return connected


@overload
async def connect_tcp(
    remote_host: IPAddressType,
    remote_port: int,
    *,
    local_host: IPAddressType | None = ...,
    local_port: int | None = ...,
    ssl_context: ssl.SSLContext | None = ...,
    tls_standard_compatible: bool = ...,
    tls_hostname: str,
    happy_eyeballs_delay: float = ...,
    config: NetConfig | None = ...,
) -> TLSStream: ...


@overload
async def connect_tcp(
    remote_host: IPAddressType,
    remote_port: int,
    *,
    local_host: IPAddressType | None = ...,
    local_port: int | None = ...,
    ssl_context: ssl.SSLContext,
    tls_standard_compatible: bool = ...,
    tls_hostname: str | None = ...,
    happy_eyeballs_delay: float = ...,
    config: NetConfig | None = ...,
) -> TLSStream: ...


@overload
async def connect_tcp(
    remote_host: IPAddressType,
    remote_port: int,
    *,
    local_host: IPAddressType | None = ...,
    local_port: int | None = ...,
    tls: Literal[True],
    ssl_context: ssl.SSLContext | None = ...,
    tls_standard_compatible: bool = ...,
    tls_hostname: str | None = ...,
    happy_eyeballs_delay: float = ...,
    config: NetConfig | None = ...,
) -> TLSStream: ...


@overload
async def connect_tcp(
    remote_host: IPAddressType,
    remote_port: int,
    *,
    local_host: IPAddressType | None = ...,
    local_port: int | None = ...,
    tls: Literal[False],
    ssl_context: ssl.SSLContext | None = ...,
    tls_standard_compatible: bool = ...,
    tls_hostname: str | None = ...,
    happy_eyeballs_delay: float = ...,
    config: NetConfig | None = ...,
) -> HorizonSocketStream: ...


@overload
async def connect_tcp(
    remote_host: IPAddressType,
    remote_port: int,
    *,
    local_host: IPAddressType | None = ...,
    local_port: int | None = ...,
    happy_eyeballs_delay: float = ...,
    config: NetConfig | None = ...,
) -> HorizonSocketStream: ...


async def connect_tcp(
    remote_host: IPAddressType,
    remote_port: int,
    *,
    local_host: IPAddressType | None = None,
    local_port: int | None = None,
    tls: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    tls_standard_compatible: bool = True,
    tls_hostname: str | None = None,
    happy_eyeballs_delay: float = 0.25,
    config: NetConfig | None = None,
) -> HorizonSocketStream | TLSStream:
    """:func:`anyio.connect_tcp`, with ``config``'s options applied before ``connect()``.

    anyio's parameters, order, defaults and behaviour: happy eyeballs (RFC 6555; the first
    IPv6 address first, then the first IPv4 one, a new attempt every ``happy_eyeballs_delay``
    seconds), ``local_host``/``local_port`` bound before connecting (``local_port`` alone is
    ignored, as by anyio), ``OSError("All connection attempts failed")`` raised from the one
    attempt's error or from an ExceptionGroup of them all, and a TLS handshake with anyio's
    own :class:`~anyio.streams.tls.TLSStream` when ``tls``, ``ssl_context`` or ``tls_hostname``
    is given. ``config`` (keyword-only, None: ``NetConfig()``) tunes the socket; its report is
    ``extra(HorizonAttribute.options)``, on the TLS stream too (anyio's TLSStream passes its
    transport's attributes through; ``tls_stream.transport_stream`` is the
    :class:`HorizonSocketStream`).

    Example::

        stream = await connect_tcp("localhost", 8080, config=NetConfig(tcp_nodelay=True))
        stream.extra(HorizonAttribute.options)["tcp_nodelay"].effective   # 1
        tls = await connect_tcp("example.com", 443, tls=True)
    """
    cfg = anyio_config(config, False)
    local: SocketAddress | None = None
    family: int = socket.AF_UNSPEC
    if local_host:
        # As anyio: any socket type, the first answer; its family limits the remote lookup.
        family, _kind, local = (await lookup(local_host, local_port))[0]
    targets = await _targets(remote_host, remote_port, family)
    stream = await _happy_eyeballs(targets, cfg, local, happy_eyeballs_delay)
    if not (tls or tls_hostname or ssl_context):
        return stream
    try:
        return await TLSStream.wrap(
            stream,
            server_side=False,
            hostname=tls_hostname or str(remote_host),
            ssl_context=ssl_context,
            standard_compatible=tls_standard_compatible,
        )
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise


def _listener_config(cfg: NetConfig, address: SocketAddress, mixed: bool) -> NetConfig:
    """The config of one listener of a list; ``mixed``: an IPv4 listener shares the port."""
    if address.family != 6:
        return cfg
    # anyio sets IPV6_V6ONLY on every IPv6 listener of a list. Only the wildcard's behaviour
    # depends on it (Linux sets it itself when a socket binds a specific IPv6 address), so a
    # config that leaves ipv6_only unset gets it there; an explicit False is honoured unless an
    # IPv4 listener needs the same port.
    if (cfg.ipv6_only is None and address.host.is_unspecified) or (cfg.ipv6_only is False and mixed):
        return attrs.evolve(cfg, ipv6_only=True)
    return cfg


async def _listen_all(
    sockaddrs: list[Resolved], local_port: int, cfg: NetConfig
) -> list[HorizonSocketListener]:
    """One listener per address, all on one port; anyio's retry when an ephemeral port collides."""
    errors: list[OSError] = []
    mixed = any(af == socket.AF_INET for af, _kind, _address in sockaddrs)
    for _ in range(10):  # as anyio: enough to absorb ephemeral port collisions
        listeners: list[HorizonSocketListener] = []
        port = local_port
        try:
            for _af, _kind, address in sockaddrs:
                listener_config = _listener_config(cfg, address, mixed)
                sock, report = open_tcp_listener(attrs.evolve(address, port=port), listener_config)
                listeners.append(HorizonSocketListener(sock, report, listener_config))
                if local_port == 0:
                    port = sock.getsockname()[1]
        except BaseException as exc:
            for listener in listeners:
                await listener.aclose()
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE and local_port == 0 and port:
                # The port the kernel gave the first address is taken on another: rotate, retry.
                errors.append(exc)
                sockaddrs.append(sockaddrs.pop(0))
                continue
            raise
        return listeners
    raise OSError(f"Could not create {len(sockaddrs)} listeners with a consistent port") from (
        ExceptionGroup("Several bind attempts failed", errors)
    )


async def create_tcp_listener(
    *,
    local_host: IPAddressType | None = None,
    local_port: int = 0,
    family: AnyIPAddressFamily = socket.AddressFamily.AF_UNSPEC,
    backlog: int = ANYIO_BACKLOG,
    reuse_port: bool = False,
    config: NetConfig | None = None,
) -> MultiListener[SocketStream]:
    """:func:`anyio.create_tcp_listener`, with ``config``'s options applied before ``bind()``.

    anyio's parameters, defaults and listeners: ``local_host`` None asks getaddrinfo for the
    passive (wildcard) addresses; where the host has dual-stack IPv6 and ``family`` is
    AF_UNSPEC that is one IPv6 socket with IPV6_V6ONLY off (unless ``config.ipv6_only`` is
    True: then one per family), otherwise one listener per address, IPv4 first, all on one
    port, IPv6 ones IPv6-only. Link-local addresses take their scope (``fe80::1%lo``,
    ``fe80::1%1``). ``reuse_port`` and ``backlog`` combine with an explicit ``config`` as
    :mod:`horizon_drivers.aio.defaults` says. For TLS wrap the result in anyio's
    :class:`~anyio.streams.tls.TLSListener`.

    Example::

        async with await create_tcp_listener(local_host="127.0.0.1", config=NetConfig()) as listener:
            await listener.serve(handler)
    """
    cfg = anyio_config(config, reuse_port)
    wanted_backlog = listen_backlog(config, backlog)
    if wanted_backlog != cfg.tcp_backlog:
        cfg = attrs.evolve(cfg, tcp_backlog=wanted_backlog)
    host = str(local_host) if local_host is not None else None
    # As anyio: type 0 off Windows (uvloop loses link-local scope ids for SOCK_STREAM lookups),
    # then only the stream answers, without repeats, sorted (IPv4 before IPv6).
    infos = await anyio.getaddrinfo(
        host,
        local_port,
        family=family,
        type=socket.SOCK_STREAM if sys.platform == "win32" else 0,
        flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG,
    )
    stream_kind = socket.SOCK_STREAM
    unique = sorted({(af, kind, addr) for af, kind, _p, _c, addr in infos if kind == stream_kind})
    sockaddrs: list[Resolved] = [(af, kind, address_of(sockaddr)) for af, kind, sockaddr in unique]
    if (
        host is None
        and family == socket.AF_UNSPEC
        and cfg.ipv6_only is not True
        and socket.has_dualstack_ipv6()
        and any(af == socket.AF_INET6 for af, *_ in infos)
    ):
        dual = attrs.evolve(cfg, ipv6_only=False)
        sock, report = open_tcp_listener(wildcard(socket.AF_INET6, local_port), dual)
        return MultiListener([HorizonSocketListener(sock, report, dual)])
    return MultiListener(await _listen_all(sockaddrs, local_port, cfg))
