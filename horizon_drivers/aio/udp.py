"""UDP for anyio apps: anyio's own socket interfaces, tuned by NetConfig, plus batch calls.

Rules this module obeys:

* The objects implement :class:`anyio.abc.UDPSocket` / :class:`anyio.abc.ConnectedUDPSocket` with
  anyio's semantics: ``ClosedResourceError`` after ``aclose()`` (and in a task that was waiting
  when another task closed the socket), ``BusyResourceError`` for a second concurrent receive (or
  send), async iteration, typed extra attributes, the port free as soon as ``aclose()`` returns.
* Readiness comes from :func:`anyio.wait_readable` / :func:`anyio.wait_writable` on a nonblocking
  socket; there is no transport and no queue in between, so the kernel's receive buffer is the only
  buffer and its overflow is counted (``stats.kernel_drops``, SO_RXQ_OVFL) instead of hidden.
  (anyio's asyncio backend keeps a 100-datagram deque that silently discards the oldest.)
* Cancellation never loses, splits or duplicates a datagram: every call takes its one checkpoint
  and any readiness wait *before* it takes anything from the kernel or sends anything, and never
  awaits afterwards (:mod:`horizon_drivers.aio.checkpoints`), so neither anyio's cancel scopes
  nor a bare ``asyncio.Task.cancel`` can interrupt it between the kernel and the caller.
* An OSError from the kernel (ICMP port unreachable on a connected socket, EMSGSIZE...) surfaces as
  :class:`anyio.BrokenResourceError` with the OSError as ``__cause__``, as on anyio's trio backend;
  the socket stays usable.

Example::

    import anyio
    from horizon_core import BufferPool, NetConfig
    from horizon_drivers.aio import create_udp_socket

    async def echo() -> None:
        config = NetConfig()
        async with await create_udp_socket(
            local_host="127.0.0.1", local_port=9999, config=config
        ) as udp:
            batch = BufferPool(256, 2048).batch(64)
            while True:
                n = await udp.receive_batch(batch)
                sent = 0
                while sent < n:
                    sent += await udp.send_batch(batch, sent)
                batch.release()

    anyio.run(echo)
"""

from __future__ import annotations

import errno
import socket
import sys
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Final, Literal, TypeAlias, TypeVar

import anyio
import anyio.lowlevel
from anyio import BrokenResourceError, ClosedResourceError, ResourceGuard
from anyio.abc import ConnectedUDPSocket, UDPSocket

from horizon_core.addresses import SocketAddress, wrong_family_error
from horizon_core.buffers import Batch
from horizon_core.config import NetConfig
from horizon_core.contract import OutgoingDatagrams
from horizon_core.errors import SocketClosedError
from horizon_core.options import OptionReport
from horizon_core.stats import Stats, StatsSnapshot
from horizon_drivers.aio.attributes import HorizonAttribute
from horizon_drivers.aio.batch_io import (
    SO_RXQ_OVFL,
    SOL_UDP,
    UDP_GRO,
    BatchEngine,
    NativeEngine,
    PortableEngine,
    kernel_option_enabled,
    merge_snapshots,
    native_available,
)
from horizon_drivers.aio.defaults import anyio_config
from horizon_drivers.aio.nonblocking import NonblockingSocket
from horizon_drivers.aio.resolution import (
    AnyIPAddressFamily,
    IPAddressType,
    ip_literal,
    lookup,
    resolve,
    wildcard,
)
from horizon_drivers.opening import open_udp

__all__ = [
    "EngineChoice",
    "HorizonConnectedUDPSocket",
    "HorizonUDPSocket",
    "OutgoingDatagrams",
    "create_connected_udp_socket",
    "create_udp_socket",
]

#: Which batch engine to use: ``"auto"`` (native on Linux when built), ``"native"``, ``"portable"``.
EngineChoice: TypeAlias = Literal["auto", "native", "portable"]

# Larger than any UDP payload (65507 over IPv4, 65527 over IPv6) and any GRO buffer.
_MAX_DATAGRAM: Final = 65536
_HAS_RECVMSG: Final = hasattr(socket.socket, "recvmsg")
_IS_LINUX: Final = sys.platform.startswith("linux")
_TARGET_CACHE_LIMIT: Final = 1024

_wait_readable = anyio.wait_readable
_wait_writable = anyio.wait_writable


def _convert_sockaddr(sockaddr: Any) -> tuple[str, int]:
    # anyio's form: IPv6 4-tuples become (host, port), with a non-zero scope as host%scope.
    if len(sockaddr) == 4:
        host, port, _flowinfo, scope_id = sockaddr
        if scope_id:
            return f"{host.split('%')[0]}%{scope_id}", port
        return host, port
    result: tuple[str, int] = sockaddr  # IPv4: recvfrom's (host, port) already is anyio's form
    return result


def _pick_engine(
    choice: EngineChoice, sock: socket.socket, report: OptionReport, config: NetConfig
) -> BatchEngine:
    if choice not in ("auto", "native", "portable"):
        raise ValueError(f"batch_engine must be 'auto', 'native' or 'portable', got {choice!r}")
    if choice == "native" or (choice == "auto" and native_available()):
        return NativeEngine(sock, report, config)
    return PortableEngine(sock, report)


class _DatagramSocket(NonblockingSocket):
    """What the unconnected and connected sockets share: lifecycle, guards, batches, stats."""

    def __init__(
        self,
        sock: socket.socket,
        report: OptionReport,
        config: NetConfig,
        engine: BatchEngine,
    ) -> None:
        super().__init__(sock, report, config)
        self._engine = engine
        self._counters = Stats()
        self._receive_guard = ResourceGuard("reading from")
        self._send_guard = ResourceGuard("writing to")
        # Datagrams already taken from the kernel but not yet returned: the rest of a GRO buffer
        # that receive() split. Bounded by one buffer (64 KiB), returned in order, never dropped.
        self._pending: deque[Any] = deque()
        self._v6 = sock.family == socket.AF_INET6
        want_drops = (
            _IS_LINUX and _HAS_RECVMSG and kernel_option_enabled(sock, socket.SOL_SOCKET, SO_RXQ_OVFL)
        )
        self._want_gro = _IS_LINUX and _HAS_RECVMSG and kernel_option_enabled(sock, SOL_UDP, UDP_GRO)
        self._want_control = want_drops or self._want_gro
        self._ancsize = socket.CMSG_SPACE(4) * 2 if self._want_control else 0
        if want_drops:
            self._counters.kernel_drops = 0  # no control message until the first drop
        self._targets: dict[Any, Any] = {}

    # -- anyio plumbing --------------------------------------------------------------------

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """anyio's SocketAttribute entries plus :class:`HorizonAttribute`."""
        attributes = dict(super().extra_attributes)
        attributes[HorizonAttribute.stats] = lambda: self.stats
        attributes[HorizonAttribute.batch_engine] = lambda: self._engine.name
        return attributes

    def _close_socket(self) -> None:
        self._engine.close()
        super()._close_socket()

    # -- Horizon's additions ---------------------------------------------------------------

    @property
    def batch_engine(self) -> str:
        """``"recvmmsg"`` (native Linux batch calls) or ``"portable"`` (stdlib loop)."""
        return self._engine.name

    @property
    def stats(self) -> StatsSnapshot:
        """Counters and batch-size histograms since the socket opened, with kernel drops.

        ``kernel_drops`` is the kernel's SO_RXQ_OVFL count as of the last datagram received (None
        when the option is off, refused, or the platform has no such counter).

        Example::

            before = udp.stats
            ...
            print((udp.stats - before).datagrams_received)
        """
        return merge_snapshots(self._counters.snapshot(), self._engine.snapshot())

    async def receive_batch(self, batch: Batch) -> int:
        """Wait until a datagram is waiting, then receive up to ``batch.capacity`` in one call.

        The batch must be empty (``release()`` it first). On Linux with the native driver this is
        one recvmmsg straight into the pool; elsewhere a ``recvmsg_into`` loop. Truncated datagrams
        are flagged with their true length. Returns how many datagrams the batch now holds.

        Example::

            n = await udp.receive_batch(batch)
            for datagram in batch:
                print(bytes(datagram.payload), datagram.address)
            batch.release()
        """
        with self._receive_guard:
            # The only awaits come before a datagram is taken (checkpoints.py), so a cancelled
            # call has taken nothing and a returning call has every datagram in the batch.
            await self._checkpoint()
            if self._closed:
                raise ClosedResourceError
            if self._pending:
                return self._drain_pending(batch)
            engine = self._engine
            return await self._when_ready(
                lambda: engine.recv_batch(batch), _wait_readable, spin=True
            )

    async def send_batch(self, datagrams: OutgoingDatagrams, start: int = 0) -> int:
        """Wait until writable, then send datagrams ``start..`` in one call; return how many went.

        ``datagrams`` is a Batch of FILLED slots (a received batch echoes to its senders without
        decoding an address) or ``(payload, address)`` pairs (address None on a connected socket).
        A partial send is not an error: call again with ``start`` advanced.

        Example::

            sent = 0
            while sent < len(batch):
                sent += await udp.send_batch(batch, sent)
        """
        with self._send_guard:
            await self._checkpoint()
            if not isinstance(datagrams, Batch | list | tuple):
                datagrams = list(datagrams)  # we may have to try again after waiting
            engine, pending = self._engine, datagrams
            # Nothing was sent while waiting: being cancelled there duplicates nothing.
            return await self._when_ready(lambda: engine.send_batch(pending, start), _wait_writable)

    # -- internals -------------------------------------------------------------------------

    def _translate(self, exc: OSError) -> Exception:
        if self._closed or isinstance(exc, SocketClosedError) or exc.errno == errno.EBADF:
            return ClosedResourceError()
        self._counters.errors += 1
        return BrokenResourceError(f"{exc.strerror or exc}")

    def _drain_pending(self, batch: Batch) -> int:
        # Rare path: datagrams receive() already took from the kernel (the rest of a GRO buffer)
        # go first, in order, through the same begin/record/commit protocol as the engines.
        first, count = batch.begin_receive()
        pool = batch.pool
        size = pool.slot_size
        pending = self._pending
        filled = 0
        try:
            while pending and filled < count:
                data, sockaddr = self._pending_item(pending[0])
                slot = first + filled
                stored = min(len(data), size)
                pool.slot_view(slot)[:stored] = data[:stored]
                address = SocketAddress.from_sockaddr(tuple(sockaddr)) if sockaddr else None
                batch.record(slot, stored, len(data), address)
                pending.popleft()
                filled += 1
        finally:
            batch.commit_receive(filled)
        return filled

    def _pending_item(self, item: Any) -> tuple[bytes, Any]:
        raise NotImplementedError

    def _receive_message(self, connected: bool) -> tuple[bytes, Any]:
        """One datagram from the kernel (BlockingIOError if none); GRO buffers are split."""
        sock = self._sock
        counters = self._counters
        if self._want_control:
            data, ancdata, _flags, sockaddr = sock.recvmsg(_MAX_DATAGRAM, self._ancsize)
            gro = 0
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(payload) >= 4:
                    counters.kernel_drops = int.from_bytes(payload[:4], sys.byteorder)
                elif level == SOL_UDP and kind == UDP_GRO and len(payload) >= 4:
                    gro = int.from_bytes(payload[:4], sys.byteorder, signed=True)
            if 0 < gro < len(data):
                # One GRO buffer carries several datagrams of `gro` bytes (the last may be
                # shorter); receive() returns datagrams, so the rest wait in _pending.
                segments = [data[i : i + gro] for i in range(0, len(data), gro)]
                for segment in segments[1:]:
                    self._pending.append(self._make_item(segment, sockaddr, connected))
                counters.datagrams_received += len(segments) - 1
                data = segments[0]
        elif connected:
            data = sock.recv(_MAX_DATAGRAM)
            sockaddr = None
        else:
            data, sockaddr = sock.recvfrom(_MAX_DATAGRAM)
        counters.recv_calls += 1
        counters.datagrams_received += 1
        counters.bytes_received += len(data)
        counters.recv_batch_sizes[0] += 1
        return data, sockaddr

    def _make_item(self, data: bytes, sockaddr: Any, connected: bool) -> Any:
        raise NotImplementedError

    async def _receive_item(self, connected: bool) -> Any:
        with self._receive_guard:
            await self._checkpoint()
            if self._closed:
                raise ClosedResourceError
            if self._pending:
                return self._pending.popleft()
            data, sockaddr = await self._when_ready(
                partial(self._receive_message, connected), _wait_readable, spin=True
            )
            return self._make_item(data, sockaddr, connected)

    async def _send_to(self, data: bytes, target: Any) -> None:
        with self._send_guard:
            await self._checkpoint()
            if target is not None and type(target) is tuple:
                resolved = self._targets.get(target)
                if resolved is None:
                    resolved = await self._resolve_target(target)
                target = resolved
            sock = self._sock
            if target is None:
                await self._when_ready(partial(sock.send, data), _wait_writable)
            else:
                await self._when_ready(partial(sock.sendto, data, target), _wait_writable)
            counters = self._counters
            counters.send_calls += 1
            counters.datagrams_sent += 1
            counters.bytes_sent += len(data)
            counters.send_batch_sizes[0] += 1

    async def _resolve_target(self, target: tuple[Any, ...]) -> Any:
        host, port = target[0], target[1]
        literal = ip_literal(host)
        if literal is None:
            # A name: resolved each time (DNS answers change), never cached.
            family = self._sock.family
            try:
                addresses = await resolve(host, port, socket.SOCK_DGRAM, family=family)
            except OSError as exc:
                raise BrokenResourceError(f"cannot resolve {host!r}: {exc}") from exc
            return self._sockaddr_of(addresses[0])
        address, scope = literal
        flowinfo = target[2] if len(target) == 4 else 0
        scope = target[3] if len(target) == 4 and target[3] else scope
        sockaddr = self._sockaddr_of(SocketAddress(address, port, flowinfo, scope))
        if len(self._targets) >= _TARGET_CACHE_LIMIT:
            self._targets.clear()
        self._targets[target] = sockaddr
        return sockaddr

    def _sockaddr_of(self, address: SocketAddress) -> Any:
        if self._v6:
            # IPv4 peers of a dual-stack socket are reached through ::ffff:a.b.c.d.
            return address.to_v4_mapped().to_sockaddr()
        if address.is_v4_mapped:
            return address.unmapped().to_sockaddr()
        if address.family == 6:
            raise wrong_family_error(address, 4)
        return address.to_sockaddr()


class HorizonUDPSocket(_DatagramSocket, UDPSocket):
    """An unconnected UDP socket: :class:`anyio.abc.UDPSocket` plus batches, options and stats.

    Created by :func:`create_udp_socket`. ``receive()`` returns ``(bytes, (host, port))`` and
    ``send((data, (host, port)))`` sends one datagram, exactly as anyio's; ``receive_batch`` /
    ``send_batch`` move many per call.

    Example::

        async with await create_udp_socket(local_host="127.0.0.1", config=NetConfig()) as udp:
            await udp.sendto(b"hi", "127.0.0.1", udp.extra(SocketAttribute.local_port))
            data, (host, port) = await udp.receive()
    """

    async def receive(self) -> tuple[bytes, tuple[str, int]]:
        """Wait for one datagram; return ``(payload, (host, port))``.

        Example::

            data, address = await udp.receive()
        """
        item: tuple[bytes, tuple[str, int]] = await self._receive_item(False)
        return item

    async def send(self, item: tuple[bytes, tuple[str, int]]) -> None:
        """Send ``item[0]`` to ``item[1]`` (``(host, port)``); waits while the send buffer is full.

        Example::

            await udp.send((b"ping", ("127.0.0.1", 9999)))
        """
        data, address = item
        await self._send_to(data, tuple(address))

    def _make_item(self, data: bytes, sockaddr: Any, connected: bool) -> Any:
        return data, _convert_sockaddr(sockaddr)

    def _pending_item(self, item: Any) -> tuple[bytes, Any]:
        data, address = item
        return data, address


class HorizonConnectedUDPSocket(_DatagramSocket, ConnectedUDPSocket):
    """A connected UDP socket: :class:`anyio.abc.ConnectedUDPSocket` plus batches, options, stats.

    Created by :func:`create_connected_udp_socket`. ``receive()`` returns the payload only;
    ICMP errors for the peer (port unreachable) surface as BrokenResourceError.

    Example::

        async with await create_connected_udp_socket("127.0.0.1", 9999, config=NetConfig()) as udp:
            await udp.send(b"ping")
            reply = await udp.receive()
    """

    async def receive(self) -> bytes:
        """Wait for one datagram from the peer; return its payload.

        Example::

            data = await udp.receive()
        """
        item: bytes = await self._receive_item(True)
        return item

    async def send(self, item: bytes) -> None:
        """Send one datagram to the peer.

        Example::

            await udp.send(b"ping")
        """
        await self._send_to(item, None)

    def _make_item(self, data: bytes, sockaddr: Any, connected: bool) -> Any:
        return data

    def _pending_item(self, item: Any) -> tuple[bytes, Any]:
        return item, self._sock.getpeername()


_Socket = TypeVar("_Socket", HorizonUDPSocket, HorizonConnectedUDPSocket)


async def _bind_address(
    local_host: IPAddressType | None, local_port: int, family: int
) -> tuple[int, SocketAddress | None]:
    """As anyio: the first passive answer for ``local_host`` (its family wins), else None."""
    if not local_host:
        return family, None
    flags = socket.AI_PASSIVE | socket.AI_ADDRCONFIG
    found, _kind, address = (
        await lookup(local_host, local_port, family=family, kind=socket.SOCK_DGRAM, flags=flags)
    )[0]
    return found, address


def _open_datagram_socket(
    kind: type[_Socket],
    local: SocketAddress,
    config: NetConfig,
    batch_engine: EngineChoice,
    remote: SocketAddress | None = None,
) -> _Socket:
    """Open and bind with ``config`` (then connect to ``remote``); the socket is closed on failure."""
    sock, report = open_udp(local, config)
    try:
        if remote is not None:
            sock.connect(remote.to_sockaddr())
        engine = _pick_engine(batch_engine, sock, report, config)
    except BaseException:
        sock.close()
        raise
    return kind(sock, report, config, engine)


async def create_udp_socket(
    family: AnyIPAddressFamily = socket.AddressFamily.AF_UNSPEC,
    *,
    local_host: IPAddressType | None = None,
    local_port: int = 0,
    reuse_port: bool = False,
    config: NetConfig | None = None,
    batch_engine: EngineChoice = "auto",
) -> HorizonUDPSocket:
    """:func:`anyio.create_udp_socket`, with every ``config`` option applied before bind.

    anyio's parameters, defaults and errors: ``ValueError`` unless ``family`` or ``local_host``
    is given; ``local_host`` resolves (passive) to its first address, whose family wins;
    without it the socket binds ``family``'s wildcard. Link-local hosts keep their scope
    (``fe80::1%lo``). Keyword-only extras: ``config`` (None: anyio's defaults; reuse_port as
    :mod:`horizon_drivers.aio.defaults` says) and ``batch_engine``. A required option the
    kernel refuses raises :class:`~horizon_core.errors.OptionError`; the full report is
    ``udp.options`` / ``udp.extra(HorizonAttribute.options)``.

    Example::

        udp = await create_udp_socket(local_host="::1", config=NetConfig(recv_buf=4 * MiB))
        print(udp.options["recv_buf"].status, udp.local_address)
    """
    if family == socket.AF_UNSPEC and not local_host:
        raise ValueError('Either "family" or "local_host" must be given')
    cfg = anyio_config(config, reuse_port)
    found, local = await _bind_address(local_host, local_port, family)
    if local is None:
        await anyio.lowlevel.checkpoint()
        local = wildcard(found, local_port)
    return _open_datagram_socket(HorizonUDPSocket, local, cfg, batch_engine)


async def create_connected_udp_socket(
    remote_host: IPAddressType,
    remote_port: int,
    *,
    family: AnyIPAddressFamily = socket.AddressFamily.AF_UNSPEC,
    local_host: IPAddressType | None = None,
    local_port: int = 0,
    reuse_port: bool = False,
    config: NetConfig | None = None,
    batch_engine: EngineChoice = "auto",
) -> HorizonConnectedUDPSocket:
    """:func:`anyio.create_connected_udp_socket`, with ``config``'s options applied before bind.

    anyio's parameters and defaults: ``local_host`` (passive lookup, first answer) fixes the
    family; ``remote_host`` is looked up in that family and its first answer is the peer.
    Without ``local_host`` the socket binds the peer family's wildcard on ``local_port`` (port 0:
    the kernel picks one, as connect() would). Keyword-only extras as
    :func:`create_udp_socket`.

    Example::

        async with await create_connected_udp_socket("127.0.0.1", 5353) as udp:
            await udp.send(b"query")
    """
    cfg = anyio_config(config, reuse_port)
    found, local = await _bind_address(local_host, local_port, family)
    remote_family, _kind, remote = (
        await lookup(remote_host, remote_port, family=found, kind=socket.SOCK_DGRAM)
    )[0]
    if local is None:
        local = wildcard(remote_family, local_port)
    return _open_datagram_socket(HorizonConnectedUDPSocket, local, cfg, batch_engine, remote)
