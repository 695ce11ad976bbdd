"""The portable UDP socket: the sync contract on the standard library's ``socket`` module.

Rules this module obeys:

* ``recv_batch`` fills a :class:`~horizon_core.buffers.Batch` in place: ``begin_receive`` posts the
  run, one receive call per datagram writes straight into the slot and the pool's metadata arrays,
  and ``commit_receive`` runs in a ``finally`` so no slot is ever left POSTED.
* A datagram longer than its slot is flagged truncated with its true length, never cut silently
  (the stdlib's ``recvfrom_into`` cuts silently). How the true length is learnt, per platform
  (:data:`TRUNCATION_MODE`):

  - ``"msg_trunc"`` (Linux): ``recvmsg_into(..., MSG_TRUNC)``; with MSG_TRUNC among the *input*
    flags the kernel returns the datagram's real length (udp(7)), and the slot keeps the prefix.
  - ``"bounce"`` (everywhere else: macOS and the BSDs, which do not return the real length, and
    Windows, where ``recvfrom_into`` into a short buffer raises WSAEMSGSIZE and Python drops the
    length and the sender): slots of 64 KiB or more receive directly; smaller slots receive into one
    64 KiB buffer per socket (no UDP datagram is larger) and the prefix is copied into the slot.
    Correct everywhere at the cost of one copy per datagram.
* An error after some datagrams were received is kept and raised by the next receive call, as
  recvmmsg does: the datagrams already taken are returned, not lost.
* ``send_batch`` is a loop of ``sendto``: it stops at the first ``BlockingIOError`` and returns how
  many went; only a call that sent nothing raises (BlockingIOError or the error of the first send).
  Every destination is converted before the first send, so a bad address raises with nothing sent.
* GRO buffers (Linux, ``udp_gro``) are kept whole: the slot records the segment stride, the counters
  count the datagrams it carries, and ``send_batch`` re-segments it with UDP GSO, as the native
  driver does.
* Address conversions cost several times a ``sendto`` and a socket talks to a working set of peers,
  so senders are packed and destinations converted through small bounded caches.
* Would-block is the builtin ``BlockingIOError``; any operation on a closed socket raises
  :class:`~horizon_core.errors.SocketClosedError`.
* Counters are updated once per call, never per datagram.
* Windows reports an ICMP port unreachable on UDP as WSAECONNRESET (10054) on the next receive,
  connected or not. A connected socket raises it as ``ConnectionRefusedError`` (what Linux
  reports); an unconnected one drops it and keeps receiving, as Linux does (the iocp driver gets
  the same by switching SIO_UDP_CONNRESET off, which the stdlib's ``ioctl`` cannot do).

Example:
    >>> from horizon_core import BufferPool, Interest
    >>> from horizon_drivers import portable
    >>> a, b, rt = portable.bind_udp("[::1]:0"), portable.bind_udp("[::1]:0"), portable.runtime()
    >>> _ = rt.register(b, Interest.READABLE)
    >>> a.send_to(b"ping", b.local_address), len(rt.poll_once(1.0))
    (4, 1)
    >>> batch = BufferPool(8, 2048).batch(8)
    >>> b.recv_batch(batch), bytes(batch.payload(0)), batch.address(0) == a.local_address
    (1, b'ping', True)
    >>> for thing in (a, b, rt):
    ...     thing.close()
"""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal

from horizon_core.addresses import PACKED_ADDRESS_SIZE, SocketAddress, as_socket_address, wrong_family_error
from horizon_core.buffers import Batch, check_batch, check_start
from horizon_core.contract import AddressLike, BytesLike, WritableBuffer
from horizon_core.options import Level, OptionReport, OptionStatus
from horizon_core.stats import Stats, StatsSnapshot
from horizon_drivers.portable.owned_socket import OwnedSocket
from horizon_drivers.sockopts import option_number, read_kernel_drops

__all__ = ["TRUNCATION_MODE", "TruncationMode", "UdpSocket"]

TruncationMode = Literal["msg_trunc", "bounce"]

#: How this platform learns a truncated datagram's true length (see the module docstring).
TRUNCATION_MODE: Final[TruncationMode] = (
    "msg_trunc"
    if sys.platform.startswith("linux") and hasattr(socket.socket, "recvmsg_into")
    else "bounce"
)

# No UDP payload is longer than 65535 - 8 bytes, so a buffer of 64 KiB never truncates.
_BOUNCE_SIZE: Final = 65536
_MSG_TRUNC: Final = getattr(socket, "MSG_TRUNC", 0)
# Linux: SO_RXQ_OVFL (socket(7)) and UDP_GRO (udp(7)) ancillary messages carry one native int.
_RXQ_OVFL: Final = option_number(Level.SOCKET, "SO_RXQ_OVFL")
_GRO: Final = option_number(Level.UDP, "UDP_GRO")
_WINDOWS: Final = sys.platform == "win32"
_WSAECONNRESET: Final = 10054
# udp(7): a UDP_SEGMENT control message (a native u16) makes one sendmsg leave as GSO segments.
_SEGMENT: Final = option_number(Level.UDP, "UDP_SEGMENT")
_CMSG_INT_SPACE: Final = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0
# Bound of each address cache: a server's working set of peers, cleared whole when exceeded.
_ADDRESS_CACHE_LIMIT: Final = 1024


def _switched_on(report: OptionReport, name: str) -> bool:
    """True when the report shows boolean option ``name`` set to 1 (not merely set, perhaps to 0)."""
    if name not in report:
        return False
    outcome = report[name]
    value = outcome.effective if outcome.effective is not None else outcome.requested
    return outcome.status in (OptionStatus.APPLIED, OptionStatus.ADJUSTED) and bool(value)


def _send_segmented(sock: socket.socket, payload: BytesLike, target: Any, stride: int) -> int:
    """Send a GRO buffer as the datagrams it carries: one sendmsg with UDP_SEGMENT (GSO)."""
    if _SEGMENT is None:
        raise OSError(errno.EOPNOTSUPP, "a buffer of several datagrams needs UDP GSO (Linux)")
    control = [(_SEGMENT[0], _SEGMENT[1], stride.to_bytes(2, sys.byteorder))]
    _check_family(sock, target)
    if target is None:
        return sock.sendmsg((payload,), control)
    return sock.sendmsg((payload,), control, 0, target)


class _WrongFamily:
    """A destination of the other family: sending to it raises EAFNOSUPPORT (never TypeError)."""

    __slots__ = ("address",)

    def __init__(self, address: SocketAddress) -> None:
        self.address = address


def _check_family(sock: socket.socket, target: Any) -> None:
    if type(target) is _WrongFamily:
        raise wrong_family_error(target.address, 6 if sock.family == socket.AF_INET6 else 4)


def _send_to(sock: socket.socket, payload: BytesLike, target: Any) -> int:
    _check_family(sock, target)
    return sock.sendto(payload, target)


class UdpSocket(OwnedSocket):
    """A nonblocking UDP socket with batch receive and send (``selectors``/``socket`` based).

    Build one with :func:`horizon_drivers.portable.bind_udp` or ``bind_udp_dual_stack``.

    Example:
        >>> from horizon_drivers import portable
        >>> with portable.bind_udp("127.0.0.1:0") as sock:
        ...     sock.local_address.port > 0
        True
    """

    _what = "UDP socket"

    def __init__(
        self,
        sock: socket.socket,
        options: OptionReport,
        *,
        truncation_mode: TruncationMode = TRUNCATION_MODE,
    ) -> None:
        if sock.type != socket.SOCK_DGRAM:
            raise ValueError(f"expected a SOCK_DGRAM socket, got {sock!r}")
        if truncation_mode not in ("msg_trunc", "bounce"):
            raise ValueError(f"truncation_mode must be 'msg_trunc' or 'bounce', got {truncation_mode!r}")
        sock.setblocking(False)
        super().__init__(sock, options)
        self._family = 6 if sock.family == socket.AF_INET6 else 4
        self._local = SocketAddress.from_sockaddr(sock.getsockname())
        self._stats = Stats()
        self._pending: OSError | None = None
        self._connected = False
        self._mode: TruncationMode = truncation_mode
        self._bounce = memoryview(bytearray(_BOUNCE_SIZE)) if truncation_mode == "bounce" else None
        self._packed: dict[object, bytes] = {}
        self._targets: dict[object, Any] = {}
        self._targets_by_packed: dict[bytes, Any] = {}
        self._rxq_ovfl = _RXQ_OVFL is not None and _switched_on(options, "SO_RXQ_OVFL")
        self._gro = _GRO is not None and _switched_on(options, "UDP_GRO")
        self._ancillary = _CMSG_INT_SPACE * (self._rxq_ovfl + self._gro)
        if self._rxq_ovfl:
            # socket(7): the kernel attaches the SO_RXQ_OVFL message only once the count is
            # non-zero, so "no message yet" means no drop yet.
            self._stats.kernel_drops = 0

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else str(self._local)
        return f"<portable.UdpSocket {state}>"

    # -- properties -------------------------------------------------------------------------

    @property
    def local_address(self) -> SocketAddress:
        """The bound address (with the port the kernel chose for port 0)."""
        return self._local

    @property
    def stats(self) -> StatsSnapshot:
        """Counters and batch-size histograms since the socket opened.

        ``kernel_drops`` is read from the kernel when asked (SO_MEMINFO on Linux), so drops after
        the last datagram received count too; elsewhere it is the last SO_RXQ_OVFL value.
        """
        stats = self._stats
        if stats.kernel_drops is not None and self._sock is not None:
            exact = read_kernel_drops(self._sock)
            if exact is not None:
                stats.kernel_drops = exact
        return stats.snapshot()

    # -- addresses ---------------------------------------------------------------------------

    def _sockaddr(self, address: AddressLike) -> Any:
        return self._sockaddr_of(as_socket_address(address))

    def _sockaddr_of(self, target: SocketAddress) -> Any:
        # A dual-stack (IPv6) socket reaches IPv4 peers through their v4-mapped form; an IPv4
        # socket given a v4-mapped address means the plain IPv4 peer. An IPv6 address on an IPv4
        # socket becomes a _WrongFamily, raised as OSError when a datagram is sent to it, so a
        # batch keeps what it sent before it.
        if self._family == 6:
            target = target.to_v4_mapped()
        elif target.is_v4_mapped:
            target = target.unmapped()
        elif target.family == 6:
            return _WrongFamily(target)
        return target.to_sockaddr()

    def _target(self, address: AddressLike) -> Any:
        """``_sockaddr(address)`` through the bounded cache of destinations."""
        # ("h", 9.0) == ("h", 9), but only the second is a valid address: key tuples with their
        # element types so a refused address never finds an accepted one's entry.
        key = (address, *map(type, address)) if type(address) is tuple else address
        try:
            return self._targets[key]
        except KeyError:
            pass
        except TypeError:  # unhashable: convert uncached and let the conversion judge it
            return self._sockaddr(address)
        target = self._sockaddr(address)
        if len(self._targets) >= _ADDRESS_CACHE_LIMIT:
            self._targets.clear()
        self._targets[key] = target
        return target

    def _unpack_target(self, packed: bytes) -> Any:
        """The destination of a slot's packed address (None: no address, the connected peer)."""
        try:
            return self._targets_by_packed[packed]
        except KeyError:
            pass
        address = SocketAddress.unpack_from(packed, 0)
        target = None if address is None else self._sockaddr_of(address)
        if len(self._targets_by_packed) >= _ADDRESS_CACHE_LIMIT:
            self._targets_by_packed.clear()
        self._targets_by_packed[packed] = target
        return target

    def _pack(self, raw: Any) -> bytes:
        packed = self._packed.get(raw)
        if packed is None:
            buf = bytearray(PACKED_ADDRESS_SIZE)
            SocketAddress.from_sockaddr(raw).pack_into(buf, 0)
            if len(self._packed) >= _ADDRESS_CACHE_LIMIT:
                self._packed.clear()
            packed = self._packed[raw] = bytes(buf)
        return packed

    # -- batch receive ----------------------------------------------------------------------

    def recv_batch(self, batch: Batch) -> int:
        """Receive up to ``batch.capacity`` datagrams; return how many.

        The batch must be empty. BlockingIOError when nothing is waiting. Truncated datagrams are
        flagged with their true length.
        """
        check_batch(batch)
        sock = self._live("recv_batch")
        stats = self._stats
        pending, self._pending = self._pending, None
        if pending is not None:
            stats.errors += 1
            raise pending
        first, count = batch.begin_receive()
        filled = nbytes = ntrunc = coalesced = 0
        error: OSError | None = None
        try:
            if self._mode == "msg_trunc":
                filled, nbytes, ntrunc, coalesced, error = self._receive_msg_trunc(sock, batch, first, count)
            else:
                filled, nbytes, ntrunc, error = self._receive_bounce(sock, batch, first, count)
        finally:
            batch.commit_receive(filled)
        stats.record_receive(filled, nbytes, ntrunc)
        # The histogram counts buffers; datagrams_received also counts those inside GRO buffers.
        stats.datagrams_received += coalesced
        if filled:
            self._pending = error
            return filled
        if error is not None:
            stats.errors += 1
            raise error
        stats.would_block += 1
        raise BlockingIOError(errno.EAGAIN, "no datagram is waiting")

    def _receive_msg_trunc(
        self, sock: socket.socket, batch: Batch, first: int, count: int
    ) -> tuple[int, int, int, int, OSError | None]:
        pool = batch.pool
        memory, size = pool.memory, pool.slot_size
        lengths, originals, truncated = pool.lengths, pool.original_lengths, pool.truncated
        segments, addresses = pool.segment_sizes, pool.addresses
        recvmsg_into, ancillary = sock.recvmsg_into, self._ancillary
        packed_cache = self._packed
        nbytes = ntrunc = coalesced = 0
        slot, end = first, first + count
        while slot < end:
            offset = slot * size
            try:
                # MSG_TRUNC as an *input* flag: the kernel returns the real datagram length.
                n, cmsgs, _, raw = recvmsg_into(
                    (memory[offset : offset + size],), ancillary, _MSG_TRUNC
                )
            except BlockingIOError:
                break
            except OSError as exc:
                return slot - first, nbytes, ntrunc, coalesced, exc
            length = n if n < size else size
            lengths[slot] = length
            originals[slot] = n
            truncated[slot] = n > length
            stride = self._read_cmsgs(cmsgs) if cmsgs else 0
            if 0 < stride < n:
                segments[slot] = stride
                # A GRO buffer carries ceil(length / stride) datagrams, the last maybe shorter.
                coalesced += (length + stride - 1) // stride - 1
            else:
                segments[slot] = 0
            packed = packed_cache.get(raw) or self._pack(raw)
            offset = slot * PACKED_ADDRESS_SIZE
            addresses[offset : offset + PACKED_ADDRESS_SIZE] = packed
            nbytes += length
            ntrunc += n > length
            slot += 1
        return slot - first, nbytes, ntrunc, coalesced, None

    def _read_cmsgs(self, cmsgs: list[tuple[int, int, bytes]]) -> int:
        segment = 0
        for level, kind, data in cmsgs:
            if (level, kind) == _RXQ_OVFL:
                self._stats.kernel_drops = int.from_bytes(data[:4], sys.byteorder)
            elif (level, kind) == _GRO:
                segment = int.from_bytes(data[:4], sys.byteorder)
        return segment

    def _receive_bounce(
        self, sock: socket.socket, batch: Batch, first: int, count: int
    ) -> tuple[int, int, int, OSError | None]:
        pool = batch.pool
        memory, size = pool.memory, pool.slot_size
        lengths, originals, truncated = pool.lengths, pool.original_lengths, pool.truncated
        segments, addresses = pool.segment_sizes, pool.addresses
        bounce = self._bounce
        assert bounce is not None
        direct = size >= _BOUNCE_SIZE
        nbytes = ntrunc = 0
        slot, end = first, first + count
        while slot < end:
            offset = slot * size
            try:
                if direct:
                    n, raw = sock.recvfrom_into(memory[offset : offset + size])
                else:
                    n, raw = sock.recvfrom_into(bounce)
            except BlockingIOError:
                break
            except OSError as exc:
                error = self._icmp_error(exc)
                if error is None:
                    continue
                return slot - first, nbytes, ntrunc, error
            length = n if n < size else size
            if not direct:
                memory[offset : offset + length] = bounce[:length]
            lengths[slot] = length
            originals[slot] = n
            truncated[slot] = n > length
            segments[slot] = 0
            offset = slot * PACKED_ADDRESS_SIZE
            addresses[offset : offset + PACKED_ADDRESS_SIZE] = self._pack(raw)
            nbytes += length
            ntrunc += n > length
            slot += 1
        return slot - first, nbytes, ntrunc, None

    # -- batch send ---------------------------------------------------------------------------

    def send_batch(
        self, datagrams: Batch | Iterable[tuple[BytesLike, AddressLike | None]], start: int = 0
    ) -> int:
        """Send datagrams ``start..``; return how many went (a partial send is not an error).

        Only a call that sent nothing raises: BlockingIOError, or the first send's error.
        Datagrams without an address (None, or a Batch slot without one) go to the connected
        peer; a Batch slot holding a GRO buffer leaves as its segments (UDP GSO).
        """
        sock = self._live("send_batch")
        outgoing: list[tuple[BytesLike, Any, int]]
        if isinstance(datagrams, Batch):
            check_start(start, len(check_batch(datagrams)))
            outgoing = self._slots_to_send(datagrams, start)
        else:
            pairs = datagrams if isinstance(datagrams, list | tuple) else list(datagrams)
            outgoing = [
                (payload, None if address is None else self._target(address), 0)
                for payload, address in pairs[check_start(start, len(pairs)) :]
            ]
        sent = nbytes = 0
        error: OSError | None = None
        for payload, target, stride in outgoing:
            try:
                if stride:
                    nbytes += _send_segmented(sock, payload, target, stride)
                elif target is None:
                    nbytes += sock.send(payload)
                else:
                    nbytes += _send_to(sock, payload, target)
            except OSError as exc:
                error = exc
                break
            sent += 1
        return self._stats.finish_batch_send(len(outgoing), sent, nbytes, error)

    def _slots_to_send(self, batch: Batch, start: int) -> list[tuple[BytesLike, Any, int]]:
        # (payload view, destination or None, GSO stride or 0) per FILLED slot, in fill order.
        pool = batch.pool
        memory, size = pool.memory, pool.slot_size
        lengths, segments, addresses = pool.lengths, pool.segment_sizes, pool.addresses
        order = batch.order
        outgoing: list[tuple[BytesLike, Any, int]] = []
        for i in range(start, len(order)):
            slot = order[i]
            offset = slot * size
            length = lengths[slot]
            a = slot * PACKED_ADDRESS_SIZE
            target = self._unpack_target(bytes(addresses[a : a + PACKED_ADDRESS_SIZE]))
            stride = segments[slot]
            outgoing.append((memory[offset : offset + length], target, stride if 0 < stride < length else 0))
        return outgoing

    # -- single datagrams ---------------------------------------------------------------------

    def send_to(self, data: BytesLike, address: AddressLike) -> int:
        """Send one datagram to ``address``; return its length."""
        sock = self._live("send_to")
        return self._stats.count_send(lambda: _send_to(sock, data, self._target(address)))

    def send(self, data: BytesLike) -> int:
        """Send one datagram to the connected peer."""
        sock = self._live("send")
        return self._stats.count_send(lambda: sock.send(data))

    def recv_from(self, buffer: WritableBuffer) -> tuple[int, SocketAddress]:
        """Receive one datagram into ``buffer``; return (bytes stored, sender).

        A datagram longer than ``buffer`` is cut to fit (use ``recv_batch`` to learn truncation).
        """
        sock = self._live("recv_from")
        n, raw = self._count_receive(lambda: sock.recvfrom_into(buffer))
        return n, SocketAddress.from_sockaddr(raw)

    def recv_into(self, buffer: WritableBuffer) -> int:
        """Receive one datagram from the connected peer into ``buffer``; return bytes stored."""
        sock = self._live("recv_into")
        n, _ = self._count_receive(lambda: (sock.recv_into(buffer), ()))
        return n

    def _count_receive(self, call: Callable[[], tuple[int, Any]]) -> tuple[int, Any]:
        stats = self._stats
        pending, self._pending = self._pending, None
        if pending is not None:
            stats.errors += 1
            raise pending
        while True:
            try:
                n, raw = call()
                break
            except BlockingIOError:
                stats.record_receive(0, 0)
                stats.would_block += 1
                raise
            except OSError as exc:
                error = self._icmp_error(exc)
                if error is None:
                    continue
                stats.errors += 1
                if error is exc:
                    raise
                raise error from exc
        stats.record_receive(1, n)
        return n, raw

    def connect(self, address: AddressLike) -> None:
        """Fix the peer: ``send``/``recv_into`` then use it, and ICMP errors are reported."""
        sock = self._live("connect")
        target = self._sockaddr(address)
        _check_family(sock, target)
        sock.connect(target)
        self._connected = True

    def _icmp_error(self, exc: OSError) -> OSError | None:
        """What a receive error means; None for an ICMP error an unconnected socket ignores.

        Only Windows differs: it reports ICMP port unreachable as WSAECONNRESET (10054).
        """
        if not _WINDOWS or getattr(exc, "winerror", None) != _WSAECONNRESET:
            return exc
        if not self._connected:
            return None
        return ConnectionRefusedError(
            errno.ECONNREFUSED, "the connected peer's port is unreachable (ICMP; WSAECONNRESET)"
        )

