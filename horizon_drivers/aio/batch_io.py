"""The synchronous batch calls behind ``receive_batch``/``send_batch``: native or portable.

Rules this module obeys:

* An engine never waits: ``recv_batch`` raises the builtin ``BlockingIOError`` when nothing is
  waiting and ``send_batch`` when not even the first datagram fits. The async layer
  (:mod:`horizon_drivers.aio.udp`) waits for readiness with anyio and calls again. Nothing is
  queued here, so nothing can be dropped here.
* Between ``batch.begin_receive()`` and ``batch.commit_receive(n)`` there is no await, so a
  cancelled task can never leave slots POSTED or a datagram half-received: every datagram taken
  from the kernel is committed to the batch before control returns.
* :class:`NativeEngine` (Linux, when ``horizon_drivers.native`` is built) runs recvmmsg/sendmmsg on
  a duplicate of the socket's descriptor through the native driver's ``UdpSocket``; the kernel's
  drop counter (SO_RXQ_OVFL) comes from its control-message parsing.
* :class:`PortableEngine` loops ``recvmsg_into`` (``recvfrom_into`` where the platform has no
  recvmsg, i.e. Windows) and ``sendto``. On Linux it passes MSG_TRUNC so a truncated datagram's true
  length is known; elsewhere the true length is only known to exceed the slot
  (``slot_size + 1`` is recorded). It parses SO_RXQ_OVFL and UDP_GRO control messages when the
  kernel enabled them. Without recvmsg (Windows) ``kernel_drops`` stays None: the counter does not
  exist there.
* An error after some datagrams already moved is not lost: the count is returned and the error is
  raised by the next call (the same contract sendmmsg keeps through ``sk_err``).

Example::

    from horizon_core.buffers import BufferPool
    engine = make_engine(sock, report, config)      # sock: a bound, nonblocking UDP socket
    batch = BufferPool(64, 2048).batch(64)
    try:
        n = engine.recv_batch(batch)
    except BlockingIOError:
        n = 0
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterable
from typing import Any, Final, Protocol, TypeAlias

from horizon_core.addresses import PACKED_ADDRESS_SIZE, SocketAddress, as_socket_address
from horizon_core.buffers import Batch, BufferPool
from horizon_core.config import NetConfig
from horizon_core.contract import AddressLike, BytesLike
from horizon_core.options import OptionReport
from horizon_core.stats import Stats, StatsSnapshot

__all__ = [
    "SOL_UDP",
    "SO_RXQ_OVFL",
    "UDP_GRO",
    "UDP_SEGMENT",
    "BatchEngine",
    "NativeEngine",
    "Outgoing",
    "PortableEngine",
    "kernel_option_enabled",
    "make_engine",
    "merge_snapshots",
    "native_available",
]

#: What the engines send: the core's ``Datagrams`` plus ``None`` for a connected socket's peer.
Outgoing: TypeAlias = Batch | Iterable[tuple[BytesLike, AddressLike | None]]

_IS_LINUX: Final = sys.platform.startswith("linux")
# socket(7): SO_RXQ_OVFL is 40 on Linux; Python's socket module does not export it.
SO_RXQ_OVFL: Final = 40
# udp(7): UDP_SEGMENT (GSO) is 103 and UDP_GRO 104 at level SOL_UDP (17); not exported either.
SOL_UDP: Final = 17
UDP_SEGMENT: Final = 103
UDP_GRO: Final = 104
_HAS_RECVMSG: Final = hasattr(socket.socket, "recvmsg_into")
# MSG_TRUNC as an *input* flag (return the true length) is a Linux extension (recv(2)).
_RECV_FLAGS: Final = socket.MSG_TRUNC if _IS_LINUX else 0
_MSG_TRUNC: Final = getattr(socket, "MSG_TRUNC", 0)
# Bounded caches of address conversions: a server talks to a working set of peers, and the
# conversions (SocketAddress construction, str() of ipaddress objects) cost more than a syscall.
_CACHE_LIMIT: Final = 4096
_NO_ADDRESS: Final = bytes(PACKED_ADDRESS_SIZE)
_WIN_EMSGSIZE: Final = 10040


def native_available() -> bool:
    """True when the native Linux batch driver imports (Linux, extension built).

    Example:
        >>> isinstance(native_available(), bool)
        True
    """
    return _native_udp_class() is not None


def _native_udp_class() -> Any:
    if not _IS_LINUX:
        return None
    try:
        from horizon_drivers.native import UdpSocket
    except ImportError:
        return None
    return UdpSocket


class BatchEngine(Protocol):
    """What the async sockets need from a batch implementation (all calls nonblocking)."""

    @property
    def name(self) -> str:
        """``"recvmmsg"`` (native) or ``"portable"``."""
        ...

    def recv_batch(self, batch: Batch) -> int:
        """Fill ``batch`` with what is waiting; BlockingIOError when nothing is."""
        ...

    def send_batch(self, datagrams: Outgoing, start: int = 0) -> int:
        """Send datagrams ``start..``; return how many went; BlockingIOError if none fit."""
        ...

    def snapshot(self) -> StatsSnapshot:
        """Counters of the batch calls made through this engine."""
        ...

    def close(self) -> None:
        """Release what the engine holds (the native engine's duplicate descriptor)."""
        ...


def merge_snapshots(a: StatsSnapshot, b: StatsSnapshot) -> StatsSnapshot:
    """Add two snapshots counted by different paths of one socket.

    ``kernel_drops`` is a cumulative kernel counter, not a sum: the larger known value wins.

    Example:
        >>> merge_snapshots(StatsSnapshot(errors=1), StatsSnapshot(errors=2, kernel_drops=5)).errors
        3
    """
    drops = [d for d in (a.kernel_drops, b.kernel_drops) if d is not None]
    return StatsSnapshot(
        datagrams_received=a.datagrams_received + b.datagrams_received,
        bytes_received=a.bytes_received + b.bytes_received,
        datagrams_sent=a.datagrams_sent + b.datagrams_sent,
        bytes_sent=a.bytes_sent + b.bytes_sent,
        truncated=a.truncated + b.truncated,
        recv_calls=a.recv_calls + b.recv_calls,
        send_calls=a.send_calls + b.send_calls,
        would_block=a.would_block + b.would_block,
        partial_sends=a.partial_sends + b.partial_sends,
        errors=a.errors + b.errors,
        kernel_drops=max(drops) if drops else None,
        recv_batch_sizes=tuple(x + y for x, y in zip(a.recv_batch_sizes, b.recv_batch_sizes, strict=True)),
        send_batch_sizes=tuple(x + y for x, y in zip(a.send_batch_sizes, b.send_batch_sizes, strict=True)),
    )


def kernel_option_enabled(sock: socket.socket, level: int, option: int) -> bool:
    """Ask the kernel whether an integer option is on (False when it does not know it).

    The report says what was asked and granted; this reads the socket itself, so a refused option
    never makes us parse control messages the kernel will not send.

    Example:
        >>> with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ...     kernel_option_enabled(s, socket.SOL_SOCKET, socket.SO_BROADCAST)
        False
    """
    try:
        return sock.getsockopt(level, option) != 0
    except OSError:
        return False


class NativeEngine:
    """recvmmsg/sendmmsg through ``horizon_drivers.native.UdpSocket`` on a duplicated descriptor.

    The native socket adopts (and will close) a ``dup()`` of the descriptor, so the stdlib socket
    keeps serving anyio's ``raw_socket`` attribute and the single-datagram calls; both
    descriptors name one kernel socket and :meth:`close` releases the duplicate.

    Example::

        engine = NativeEngine(sock, report, config)
        n = engine.recv_batch(batch)      # one recvmmsg
    """

    __slots__ = ("_native",)

    def __init__(self, sock: socket.socket, report: OptionReport, config: NetConfig) -> None:
        cls = _native_udp_class()
        if cls is None:
            raise ImportError("horizon_drivers.native is not available on this host")
        self._native = cls(sock.dup(), report, config)

    @property
    def name(self) -> str:
        """Always ``"recvmmsg"``."""
        return "recvmmsg"

    def recv_batch(self, batch: Batch) -> int:
        """One recvmmsg into the batch's slots (BlockingIOError when nothing waits)."""
        n: int = self._native.recv_batch(batch)
        return n

    def send_batch(self, datagrams: Outgoing, start: int = 0) -> int:
        """One sendmmsg of datagrams ``start..`` (BlockingIOError when none fit)."""
        n: int = self._native.send_batch(datagrams, start)
        return n

    def snapshot(self) -> StatsSnapshot:
        """The native driver's C counters, including SO_RXQ_OVFL drops."""
        snap: StatsSnapshot = self._native.stats
        return snap

    def close(self) -> None:
        """Close the duplicate descriptor (idempotent)."""
        self._native.close()


class PortableEngine:
    """A stdlib loop: ``recvmsg_into`` per datagram straight into the pool, ``sendto`` per datagram.

    Metadata goes into the pool's arrays directly (as the native driver does) and addresses are
    converted through small bounded caches, so a steady peer set costs no object per datagram
    beyond what the socket module itself creates.

    Example::

        engine = PortableEngine(sock)
        n = engine.send_batch([(b"ping", ("127.0.0.1", 9))])
    """

    __slots__ = (
        "_ancsize",
        "_buffer_lists",
        "_deferred",
        "_packed_by_sockaddr",
        "_sock",
        "_sockaddr_by_key",
        "_sockaddr_by_packed",
        "_stats",
        "_v6",
        "_want_drops",
        "_want_gro",
    )

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._v6 = sock.family == socket.AF_INET6
        self._stats = Stats()
        self._want_drops = (
            _IS_LINUX and _HAS_RECVMSG and kernel_option_enabled(sock, socket.SOL_SOCKET, SO_RXQ_OVFL)
        )
        self._want_gro = _IS_LINUX and _HAS_RECVMSG and kernel_option_enabled(sock, SOL_UDP, UDP_GRO)
        if self._want_drops:
            # The kernel attaches the counter only once it is non-zero: no message means 0.
            self._stats.kernel_drops = 0
        self._ancsize = socket.CMSG_SPACE(4) * 2 if (self._want_drops or self._want_gro) else 0
        self._deferred: OSError | None = None
        self._buffer_lists: tuple[BufferPool, list[list[memoryview]]] | None = None
        self._packed_by_sockaddr: dict[Any, bytes] = {}
        self._sockaddr_by_packed: dict[bytes, Any] = {}
        self._sockaddr_by_key: dict[Any, Any] = {}

    @property
    def name(self) -> str:
        """Always ``"portable"``."""
        return "portable"

    def snapshot(self) -> StatsSnapshot:
        """Counters of this engine's calls."""
        return self._stats.snapshot()

    def close(self) -> None:
        """Nothing to release: the stdlib socket belongs to the async socket."""

    def _raise_deferred(self) -> None:
        error = self._deferred
        if error is not None:
            self._deferred = None
            raise error

    # -- receive ---------------------------------------------------------------------------

    def recv_batch(self, batch: Batch) -> int:
        """Receive until the batch is full or the socket would block; return how many."""
        self._raise_deferred()
        first, count = batch.begin_receive()
        filled = 0
        nbytes = 0
        ntrunc = 0
        extra_segments = 0
        error: OSError | None = None
        pool = batch.pool
        try:
            buffers = self._buffers_for(pool)
            size = pool.slot_size
            lengths = pool.lengths
            originals = pool.original_lengths
            truncated = pool.truncated
            segments = pool.segment_sizes
            addresses = pool.addresses
            sock = self._sock
            ancsize = self._ancsize
            want_control = self._want_drops or self._want_gro
            packed_cache = self._packed_by_sockaddr
            # Flags of the whole run are reset once; the loop sets only the exceptions.
            truncated[first : first + count] = bytes(count)
            while filled < count:
                slot = first + filled
                gro = 0
                try:
                    if _HAS_RECVMSG:
                        n, ancdata, msg_flags, address = sock.recvmsg_into(
                            buffers[slot], ancsize, _RECV_FLAGS
                        )
                        if want_control and ancdata:
                            gro = self._parse_control(ancdata)
                    else:
                        n, address = sock.recvfrom_into(buffers[slot][0])
                        msg_flags = 0
                except BlockingIOError:
                    break
                except OSError as exc:
                    if not _HAS_RECVMSG and getattr(exc, "winerror", None) == _WIN_EMSGSIZE:
                        # Windows cuts the datagram and reports WSAEMSGSIZE without the sender.
                        n, msg_flags, address = size + 1, _MSG_TRUNC, None
                    else:
                        error = exc
                        break
                if n > size or msg_flags & _MSG_TRUNC:
                    truncated[slot] = 1
                    ntrunc += 1
                    if n <= size:
                        n = size + 1  # only Linux reports the true length; record a lower bound
                    stored = size
                else:
                    stored = n
                lengths[slot] = stored
                originals[slot] = n
                if gro and gro < stored:
                    segments[slot] = gro
                    extra_segments += (stored + gro - 1) // gro - 1
                else:
                    segments[slot] = 0
                packed = packed_cache.get(address) if address is not None else _NO_ADDRESS
                if packed is None:
                    packed = self._pack(address)
                offset = slot * PACKED_ADDRESS_SIZE
                addresses[offset : offset + PACKED_ADDRESS_SIZE] = packed
                nbytes += stored
                filled += 1
        finally:
            batch.commit_receive(filled)
        stats = self._stats
        stats.recv_calls += 1
        if filled:
            stats.datagrams_received += filled + extra_segments
            stats.bytes_received += nbytes
            stats.truncated += ntrunc
            stats.recv_batch_sizes[min(filled.bit_length(), len(stats.recv_batch_sizes)) - 1] += 1
            if error is not None:
                self._deferred = error
            return filled
        if error is not None:
            stats.errors += 1
            raise error
        stats.would_block += 1
        raise BlockingIOError("no datagram is waiting")

    def _buffers_for(self, pool: BufferPool) -> list[list[memoryview]]:
        # One-element buffer lists per slot, made once per pool: recvmsg_into takes an iterable
        # of buffers, and reusing them saves a slice and a list per datagram.
        cached = self._buffer_lists
        if cached is None or cached[0] is not pool:
            size = pool.slot_size
            memory = pool.memory
            lists = [[memory[i * size : (i + 1) * size]] for i in range(pool.slot_count)]
            cached = (pool, lists)
            self._buffer_lists = cached
        return cached[1]

    def _parse_control(self, ancdata: list[tuple[int, int, bytes]]) -> int:
        gro = 0
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(data) >= 4:
                self._stats.kernel_drops = int.from_bytes(data[:4], sys.byteorder)
            elif level == SOL_UDP and kind == UDP_GRO and len(data) >= 4:
                gro = int.from_bytes(data[:4], sys.byteorder, signed=True)
        return gro if gro > 0 else 0

    def _pack(self, sockaddr: Any) -> bytes:
        buf = bytearray(PACKED_ADDRESS_SIZE)
        SocketAddress.from_sockaddr(sockaddr).pack_into(buf, 0)
        packed = bytes(buf)
        cache = self._packed_by_sockaddr
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[sockaddr] = packed
        return packed

    # -- send ------------------------------------------------------------------------------

    def send_batch(self, datagrams: Outgoing, start: int = 0) -> int:
        """``sendto`` datagrams ``start..`` until one would block; return how many went."""
        self._raise_deferred()
        if isinstance(datagrams, Batch):
            return self._send_from_batch(datagrams, start)
        items = datagrams if isinstance(datagrams, list | tuple) else list(datagrams)
        total = len(items)
        if not 0 <= start <= total:
            raise IndexError(f"start must be 0..{total}, got {start}")
        sock = self._sock
        sent = 0
        nbytes = 0
        error: OSError | None = None
        for i in range(start, total):
            payload, address = items[i]
            try:
                if address is None:
                    nbytes += sock.send(payload)
                else:
                    target = self._sockaddr_by_key.get(address)
                    if target is None:
                        target = self._remember_target(address)
                    nbytes += sock.sendto(payload, target)
            except BlockingIOError as exc:
                error = exc
                break
            except OSError as exc:
                error = exc
                break
            sent += 1
        return self._account_send(total - start, sent, nbytes, error)

    def _send_from_batch(self, batch: Batch, start: int) -> int:
        total = len(batch)
        if not 0 <= start <= total:
            raise IndexError(f"start must be 0..{total}, got {start}")
        pool = batch.pool
        size = pool.slot_size
        memory = pool.memory
        lengths = pool.lengths
        segments = pool.segment_sizes
        addresses = pool.addresses
        order = batch.order
        sock = self._sock
        by_packed = self._sockaddr_by_packed
        sent = 0
        nbytes = 0
        error: OSError | None = None
        for i in range(start, total):
            slot = order[i]
            offset = slot * size
            length = lengths[slot]
            payload = memory[offset : offset + length]
            a = slot * PACKED_ADDRESS_SIZE
            packed = bytes(addresses[a : a + PACKED_ADDRESS_SIZE])
            target = by_packed.get(packed)
            if target is None:
                target = self._unpack_target(packed)
            seg = segments[slot]
            try:
                if 0 < seg < length:
                    # A GRO buffer: re-segment on the way out with UDP GSO, as the native path.
                    control = [(SOL_UDP, UDP_SEGMENT, seg.to_bytes(2, sys.byteorder))]
                    if target is False:
                        nbytes += sock.sendmsg([payload], control)
                    else:
                        nbytes += sock.sendmsg([payload], control, 0, target)
                elif target is False:
                    nbytes += sock.send(payload)
                else:
                    nbytes += sock.sendto(payload, target)
            except OSError as exc:
                error = exc
                break
            sent += 1
        return self._account_send(total - start, sent, nbytes, error)

    def _account_send(self, requested: int, sent: int, nbytes: int, error: OSError | None) -> int:
        stats = self._stats
        if requested == 0:
            return 0
        if sent == 0 and error is not None:
            stats.send_calls += 1
            if isinstance(error, BlockingIOError):
                stats.would_block += 1
            else:
                stats.errors += 1
            raise error
        stats.record_send(requested, sent, nbytes)
        if error is not None and not isinstance(error, BlockingIOError):
            self._deferred = error
        return sent

    def _remember_target(self, address: Any) -> Any:
        target = self._sockaddr_of(as_socket_address(address))
        cache = self._sockaddr_by_key
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[address] = target
        return target

    def _unpack_target(self, packed: bytes) -> Any:
        # False marks "no address": the socket is connected and send() is used.
        address = SocketAddress.unpack_from(packed, 0)
        target: Any = False if address is None else self._sockaddr_of(address)
        cache = self._sockaddr_by_packed
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[packed] = target
        return target

    def _sockaddr_of(self, address: SocketAddress) -> Any:
        if self._v6:
            # A dual-stack socket reaches IPv4 peers through their v4-mapped form.
            return address.to_v4_mapped().to_sockaddr()
        if address.is_v4_mapped:
            return address.unmapped().to_sockaddr()
        return address.to_sockaddr()


def make_engine(
    sock: socket.socket, report: OptionReport, config: NetConfig, *, prefer_native: bool = True
) -> BatchEngine:
    """The best engine for ``sock``: native recvmmsg/sendmmsg when available, else portable.

    Example::

        engine = make_engine(sock, report, config)
        engine.name    # "recvmmsg" on Linux with the extension built
    """
    if prefer_native and native_available():
        return NativeEngine(sock, report, config)
    return PortableEngine(sock)
