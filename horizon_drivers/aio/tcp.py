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
  a cancelled receive or accept has taken nothing (:mod:`horizon_drivers.aio.checkpoints`).
* :meth:`HorizonSocketStream.receive_into` reads into the caller's buffer (no allocation) with
  ``receive``'s semantics: ``EndOfStream`` at the end, never 0; ``ValueError`` for an empty
  buffer.

Example::

    import anyio
    from horizon_core import NetConfig
    from horizon_drivers.aio import connect_tcp, create_tcp_listener

    async def main() -> None:
        async with await create_tcp_listener(NetConfig(), local_host="127.0.0.1") as listener:
            port = listener.extra(SocketAttribute.local_port)
            async with await connect_tcp(NetConfig(), "127.0.0.1", port) as client:
                server = await listener.accept()
                await client.send(b"hello")
                print(await server.receive())
                await server.aclose()

    anyio.run(main)
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any, Final

import anyio
import anyio.lowlevel
import attrs
from anyio import (
    ClosedResourceError,
    EndOfStream,
    ResourceGuard,
)
from anyio.abc import SocketListener, SocketStream
from anyio.streams.stapled import MultiListener

from horizon_core.addresses import SocketAddress
from horizon_core.config import NetConfig, resolve_config
from horizon_core.contract import WritableBuffer
from horizon_core.options import OptionReport
from horizon_drivers.aio.nonblocking import NonblockingSocket
from horizon_drivers.aio.readiness import Readiness, readiness_for_running_loop
from horizon_drivers.aio.resolution import IPAddressType, resolve, wildcard
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


class HorizonSocketStream(NonblockingSocket, SocketStream):
    """A TCP connection: :class:`anyio.abc.SocketStream` opened with a NetConfig.

    Created by :func:`connect_tcp` or :meth:`HorizonSocketListener.accept`.

    Example::

        async with await connect_tcp(NetConfig(), "127.0.0.1", 8080) as stream:
            await stream.send(b"GET / HTTP/1.0\\r\\n\\r\\n")
            print(await stream.receive())
            print(stream.extra(HorizonAttribute.options)["TCP_NODELAY"].effective)
    """

    def __init__(self, sock: socket.socket, report: OptionReport, config: NetConfig) -> None:
        super().__init__(sock, report, config)
        self._receive_guard = ResourceGuard("reading from")
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
            await self._checkpoint()
            recv = self._sock.recv
            while True:
                if self._closed:
                    raise ClosedResourceError
                try:
                    data = recv(max_bytes)
                except BlockingIOError:
                    await self._readiness.wait_readable()
                    continue
                except OSError as exc:
                    raise self._translate(exc) from exc
                if not data:
                    raise EndOfStream
                return data

    async def receive_into(self, buffer: WritableBuffer) -> int:
        """Wait for bytes, write them at the start of ``buffer``, return how many (at least 1).

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
            await self._checkpoint()
            recv_into = self._sock.recv_into
            while True:
                if self._closed:
                    raise ClosedResourceError
                try:
                    count = recv_into(buffer)
                except BlockingIOError:
                    await self._readiness.wait_readable()
                    continue
                except OSError as exc:
                    raise self._translate(exc) from exc
                if count:
                    return count
                # 0: end of stream, or a buffer with no room (checked only here: no cost per read).
                if memoryview(buffer).nbytes == 0:
                    raise ValueError("buffer must not be empty")
                raise EndOfStream

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

        listener = (await create_tcp_listener(NetConfig(), local_host="127.0.0.1")).listeners[0]
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


async def _connect_one(address: SocketAddress, config: NetConfig) -> HorizonSocketStream:
    sock, report = open_tcp_stream(address, config)
    try:
        # A nonblocking connect completes with writability; SO_ERROR holds its result.
        await anyio.wait_writable(sock)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, f"connect to {address}: {os.strerror(code)}")
    except BaseException:
        sock.close()
        raise
    return HorizonSocketStream(sock, report, config)


async def connect_tcp(
    config: NetConfig | None,
    remote_host: IPAddressType,
    remote_port: int,
    *,
    happy_eyeballs_delay: float = 0.25,
) -> HorizonSocketStream:
    """Connect with ``config``'s options applied before ``connect()``; anyio's SocketStream.

    Like :func:`anyio.connect_tcp` (without TLS and local binding), with the config first: every
    address the host resolves to is tried, a new attempt starting every
    ``happy_eyeballs_delay`` seconds (RFC 6555) until one connects; the others are closed.
    Raises ``OSError`` when every attempt failed (their errors chained).

    Example::

        stream = await connect_tcp(NetConfig(tcp_nodelay=True), "localhost", 8080)
        stream.extra(HorizonAttribute.options)["TCP_NODELAY"].effective   # 1
    """
    cfg = resolve_config(config)
    addresses = await resolve(remote_host, remote_port, socket.SOCK_STREAM)
    if len(addresses) == 1:
        return await _connect_one(addresses[0], cfg)
    connected: HorizonSocketStream | None = None
    errors: list[OSError] = []

    async def attempt(address: SocketAddress, done: anyio.Event) -> None:
        nonlocal connected
        try:
            stream = await _connect_one(address, cfg)
        except OSError as exc:
            errors.append(exc)
            return
        finally:
            done.set()
        if connected is None:
            connected = stream
            group.cancel_scope.cancel()
        else:
            await stream.aclose()

    async with anyio.create_task_group() as group:
        for address in addresses:
            done = anyio.Event()
            group.start_soon(attempt, address, done)
            with anyio.move_on_after(happy_eyeballs_delay):
                await done.wait()
    if connected is None:
        raise OSError(f"all connection attempts to {remote_host}:{remote_port} failed") from (
            ExceptionGroup("connection attempts", errors) if errors else None
        )
    return connected


async def create_tcp_listener(
    config: NetConfig | None = None,
    *,
    local_host: IPAddressType | None = None,
    local_port: int = 0,
    family: socket.AddressFamily = socket.AF_UNSPEC,
    backlog: int | None = None,
    reuse_port: bool | None = None,
) -> MultiListener[SocketStream]:
    """Listen with ``config``'s options applied before ``bind()``; anyio's MultiListener.

    Like :func:`anyio.create_tcp_listener`, with the config first: ``local_host`` None listens on
    the IPv4 and IPv6 wildcards (the IPv6 one IPv6-only, unless ``config.ipv6_only`` is False: then
    one dual-stack socket); a name listens on every address it resolves to, all on one port.
    ``backlog`` (None: ``config.tcp_backlog``) and ``reuse_port`` (None: the config's) override
    the config.

    Example::

        async with await create_tcp_listener(NetConfig(), local_host="127.0.0.1") as listener:
            await listener.serve(handler)
    """
    cfg = resolve_config(config)
    changes: dict[str, Any] = {}
    if backlog is not None:
        changes["tcp_backlog"] = min(max(backlog, 0), 65535)
    if reuse_port is not None:
        changes["reuse_port"] = reuse_port
    if changes:
        cfg = attrs.evolve(cfg, **changes)
    if local_host is None:
        if family == socket.AF_UNSPEC and cfg.ipv6_only is False and socket.has_ipv6:
            addresses = [wildcard(socket.AF_INET6, local_port)]
        else:
            families = [f for f in (socket.AF_INET, socket.AF_INET6) if family in (f, socket.AF_UNSPEC)]
            if not socket.has_ipv6:
                families = [f for f in families if f != socket.AF_INET6]
            addresses = [wildcard(f, local_port) for f in families]
        await anyio.lowlevel.checkpoint()
    else:
        addresses = await resolve(local_host, local_port, socket.SOCK_STREAM, family=family, passive=True)
    listeners: list[HorizonSocketListener] = []
    try:
        for address in addresses:
            target = address
            if local_port == 0 and listeners:
                # Every listener of one call shares the port the kernel chose for the first.
                target = attrs.evolve(address, port=listeners[0].local_address.port)
            listener_config = cfg
            if target.family == 6 and cfg.ipv6_only is None and len(addresses) > 1:
                # As anyio: the IPv6 wildcard must not also claim IPv4, the other socket has it.
                listener_config = attrs.evolve(cfg, ipv6_only=True)
            sock, report = open_tcp_listener(target, listener_config)
            listeners.append(HorizonSocketListener(sock, report, listener_config))
    except BaseException:
        for listener in listeners:
            await listener.aclose()
        raise
    return MultiListener(listeners)
