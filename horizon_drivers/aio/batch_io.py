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
* :class:`PortableEngine` runs the portable driver's loops (``recvmsg_into`` with MSG_TRUNC on
  Linux, a 64 KiB bounce buffer elsewhere, ``sendto``/GSO ``sendmsg``) on a duplicate descriptor
  through ``horizon_drivers.portable.UdpSocket``: the only driver this one uses besides native,
  so that the stdlib datagram loops exist once.
* An error after some datagrams were received is not lost: the count is returned and the error is
  raised by the next receive (as recvmmsg keeps it in ``sk_err``). A send that stopped early returns
  its count; the caller resends from there and meets the error again if it persists (as sendmmsg).

Example (an engine never waits; :mod:`horizon_drivers.aio.udp` waits where the ``...`` is)::

    engine = PortableEngine(sock, report)           # sock: a bound, nonblocking UDP socket
    sent = 0
    while sent < len(batch):
        try:
            sent += engine.send_batch(batch, sent)  # resumes where a partial send stopped
        except BlockingIOError:
            ...                                     # wait until writable, then go on
"""

from __future__ import annotations

import socket
import sys
from typing import Any, Final, Protocol

from horizon_core.buffers import Batch
from horizon_core.config import NetConfig
from horizon_core.contract import OutgoingDatagrams
from horizon_core.options import OptionReport
from horizon_core.stats import StatsSnapshot
from horizon_drivers.portable.udp import UdpSocket as PortableUdpSocket
from horizon_drivers.sockopts import LINUX_OPTION_NUMBERS

__all__ = [
    "SOL_UDP",
    "SO_RXQ_OVFL",
    "UDP_GRO",
    "UDP_SEGMENT",
    "BatchEngine",
    "NativeEngine",
    "PortableEngine",
    "kernel_option_enabled",
    "merge_snapshots",
    "native_available",
]

_IS_LINUX: Final = sys.platform.startswith("linux")
# Linux's numbers (Python's socket module exports none of them), from the one table in sockopts.
SO_RXQ_OVFL: Final = LINUX_OPTION_NUMBERS["SO_RXQ_OVFL"]
SOL_UDP: Final = socket.IPPROTO_UDP
UDP_SEGMENT: Final = LINUX_OPTION_NUMBERS["UDP_SEGMENT"]
UDP_GRO: Final = LINUX_OPTION_NUMBERS["UDP_GRO"]


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

    def send_batch(self, datagrams: OutgoingDatagrams, start: int = 0) -> int:
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

    def send_batch(self, datagrams: OutgoingDatagrams, start: int = 0) -> int:
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
    """The portable driver's loops through ``horizon_drivers.portable.UdpSocket`` on a duplicate.

    Like :class:`NativeEngine`, it adopts (and will close) a ``dup()`` of the descriptor, so the
    receive and send loops exist once, in the portable driver: MSG_TRUNC on Linux and the 64 KiB
    bounce buffer elsewhere give a truncated datagram's true length and its sender everywhere.

    Example::

        engine = PortableEngine(sock, report)
        n = engine.send_batch([(b"ping", ("127.0.0.1", 9))])
    """

    __slots__ = ("_portable",)

    def __init__(self, sock: socket.socket, report: OptionReport) -> None:
        self._portable = PortableUdpSocket(sock.dup(), report)

    @property
    def name(self) -> str:
        """Always ``"portable"``."""
        return "portable"

    def recv_batch(self, batch: Batch) -> int:
        """Receive until the batch is full or the socket would block; return how many."""
        return self._portable.recv_batch(batch)

    def send_batch(self, datagrams: OutgoingDatagrams, start: int = 0) -> int:
        """Send datagrams ``start..`` until one would block; return how many went."""
        if not isinstance(datagrams, Batch | list | tuple):
            datagrams = list(datagrams)
        # The engines agree on bounds: IndexError outside 0..len, as sendmmsg's driver raises.
        if not 0 <= start <= len(datagrams):
            raise IndexError(f"start must be 0..{len(datagrams)}, got {start}")
        return self._portable.send_batch(datagrams, start)

    def snapshot(self) -> StatsSnapshot:
        """Counters of this engine's calls."""
        return self._portable.stats

    def close(self) -> None:
        """Close the duplicate descriptor (idempotent)."""
        self._portable.close()
