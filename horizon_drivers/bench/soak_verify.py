"""What ``horizon soak`` sends and how it checks what comes back: payloads, ledgers, accounts.

Rules this module obeys:

* Every payload carries ``crc32 | length | sequence`` (16 bytes, little-endian) and filler
  derived from the sequence; the CRC covers everything after itself, so a changed byte anywhere
  (header, filler, a cut or grown datagram) is caught, and so is a body swapped between datagrams.
* The UDP ledger classifies every arriving datagram exactly once: echoed (first good copy of a
  sequence), duplicate (a good copy of a sequence already echoed), reordered (a first good copy
  arriving after a later sequence; it is also echoed), corrupted (fails the check, or names a
  sequence never sent). ``never_echoed = sent - echoed`` is exact.
* Memory is bounded whatever the run's length: per-sequence state lives in a ring of
  :data:`RING_SIZE` bytes; sequences leaving the ring unechoed are kept in a sorted array (8
  bytes each), so a late echo of them still counts as echoed, not as a duplicate.
* TCP is checked byte for byte: the ledger keeps what was sent and not yet echoed, and compares
  each echoed byte with it; the first difference stops the comparison (the stream cannot be
  trusted past it) and is reported with its offset and record.
* :class:`UdpAccount` is the exact accounting ``sent = echoed + corrupted + server kernel drops +
  client kernel drops + server unsent + unexplained`` (corrupted arrivals count at most as many
  as are missing); a soak passes when ``unexplained`` and
  ``corrupted`` are both 0 (with ``strict``, duplicates and reordering fail it too).

Example:
    >>> ledger = UdpLedger()
    >>> payloads = ledger.payloads(SizePlan(64, 64), 3)
    >>> ledger.sent_more(3)
    >>> for p in (payloads[1], payloads[0], payloads[0]):
    ...     ledger.receive(p)
    >>> ledger.echoed, ledger.reordered, ledger.duplicates, ledger.never_echoed
    (2, 1, 1, 1)
"""

from __future__ import annotations

import bisect
import struct
import zlib
from array import array
from collections import deque
from typing import Any, Final

import attrs

__all__ = [
    "HEADER_SIZE",
    "MAX_SIZE",
    "RING_SIZE",
    "SizePlan",
    "TcpAccount",
    "TcpLedger",
    "UdpAccount",
    "UdpLedger",
    "check_payload",
    "make_payload",
]

#: ``crc32 (u32) | length (u32) | sequence (u64)``, little-endian.
HEADER_SIZE: Final = 16
#: The largest UDP payload over IPv4; also the largest TCP record.
MAX_SIZE: Final = 65507
#: Sequences whose state is kept one byte each; older unechoed ones move to a sorted array.
RING_SIZE: Final = 1 << 22

_CRC = struct.Struct("<I")
_BODY = struct.Struct("<IQ")
_HEADER = struct.Struct("<IIQ")
# Filler is a window into this pattern at an offset derived from the sequence.
_PATTERN: Final = bytes(((i * 167) ^ (i >> 8) ^ 0x5A) & 0xFF for i in range(MAX_SIZE + 256))
_GOLDEN: Final = 0x9E3779B1


def make_payload(seq: int, size: int) -> bytes:
    """The ``size``-byte payload for sequence ``seq`` (``HEADER_SIZE <= size <= MAX_SIZE``).

    Example:
        >>> p = make_payload(7, 32)
        >>> len(p), check_payload(p)
        (32, 7)
    """
    offset = ((seq * _GOLDEN) >> 16) & 0xFF
    body = _BODY.pack(size, seq) + _PATTERN[offset : offset + size - HEADER_SIZE]
    return _CRC.pack(zlib.crc32(body)) + body


def check_payload(data: bytes | bytearray | memoryview) -> int:
    """The sequence ``data`` carries, or -1 when it is not an intact payload.

    Example:
        >>> p = bytearray(make_payload(3, 40)); p[30] ^= 1
        >>> check_payload(p), check_payload(make_payload(3, 40)[:39])
        (-1, -1)
    """
    n = len(data)
    if n < HEADER_SIZE:
        return -1
    header: tuple[int, int, int] = _HEADER.unpack_from(data)
    crc, length, seq = header
    if length != n or zlib.crc32(memoryview(data)[4:]) != crc:
        return -1
    return seq


@attrs.frozen
class SizePlan:
    """Payload sizes: ``low`` bytes each, or a size in ``low..high`` derived from the sequence.

    Example:
        >>> plan = SizePlan.parse("64..1400")
        >>> all(64 <= plan.size(s) <= 1400 for s in range(1000)), plan.describe()
        (True, '64..1400')
        >>> SizePlan.parse("64").size(5)
        64
    """

    low: int
    high: int

    @classmethod
    def parse(cls, text: str) -> SizePlan:
        """``N`` or ``MIN..MAX``; ValueError naming the problem otherwise."""
        low_text, sep, high_text = text.strip().partition("..")
        try:
            low = int(low_text)
            high = int(high_text) if sep else low
        except ValueError:
            raise ValueError(f"expected BYTES or MIN..MAX, got {text!r}") from None
        if not HEADER_SIZE <= low <= high <= MAX_SIZE:
            raise ValueError(
                f"sizes must satisfy {HEADER_SIZE} <= MIN <= MAX <= {MAX_SIZE} "
                f"(a payload holds a {HEADER_SIZE}-byte header), got {text!r}"
            )
        return cls(low, high)

    def size(self, seq: int) -> int:
        """The size of sequence ``seq``'s payload."""
        if self.low == self.high:
            return self.low
        return self.low + ((seq * _GOLDEN) & 0xFFFFFFFF) % (self.high - self.low + 1)

    def describe(self) -> str:
        """``64`` or ``64..1400``."""
        return str(self.low) if self.low == self.high else f"{self.low}..{self.high}"


class UdpLedger:
    """Per-sequence bookkeeping of one UDP soak (see the module rules).

    Example:
        >>> ledger = UdpLedger(ring_size=8)
        >>> ps = ledger.payloads(SizePlan(16, 16), 20); ledger.sent_more(20)
        >>> for p in ps[:3] + ps[4:]:
        ...     ledger.receive(p)
        >>> ledger.receive(ps[3])      # left the ring unechoed, then echoed late
        >>> ledger.echoed, ledger.never_echoed, ledger.reordered, ledger.duplicates
        (20, 0, 1, 0)
    """

    def __init__(self, ring_size: int = RING_SIZE) -> None:
        if ring_size < 4 or ring_size & (ring_size - 1):
            raise ValueError(f"ring_size must be a power of two >= 4, got {ring_size}")
        self.sent = 0
        self.arrived = 0
        self.echoed = 0
        self.duplicates = 0
        self.reordered = 0
        self.corrupted = 0
        self.bytes_echoed = 0
        self.highest = -1
        self._mask = ring_size - 1
        self._ring = bytearray(ring_size)
        self._zeros = bytes(ring_size)
        self._base = 0  # every sequence below this has left the ring
        self._step = ring_size // 4
        self._gone = array("Q")  # unechoed sequences that left the ring, ascending
        self._late: set[int] = set()  # of those, the ones echoed late

    @property
    def never_echoed(self) -> int:
        """Sequences sent and not (yet) echoed intact."""
        return self.sent - self.echoed

    def payloads(self, sizes: SizePlan, count: int) -> list[bytes]:
        """The next ``count`` payloads (sequences ``sent..``); call :meth:`sent_more` for the
        ones the kernel took."""
        start = self.sent
        return [make_payload(seq, sizes.size(seq)) for seq in range(start, start + count)]

    def sent_more(self, count: int) -> None:
        """``count`` more payloads (the next sequences) were sent."""
        self.sent += count
        while self.sent > self._base + self._mask + 1:
            self._advance()

    def _advance(self) -> None:
        """Move the oldest quarter of the ring out, keeping its unechoed sequences."""
        base, step, mask = self._base, self._step, self._mask
        start = base & mask
        ring, gone = self._ring, self._gone
        at = ring.find(0, start, start + step)
        while at >= 0:
            gone.append(base + at - start)
            at = ring.find(0, at + 1, start + step)
        ring[start : start + step] = self._zeros[:step]
        self._base = base + step

    def receive(self, data: bytes | bytearray | memoryview) -> None:
        """Classify one arriving datagram."""
        self.arrived += 1
        seq = check_payload(data)
        if seq < 0 or seq >= self.sent:
            self.corrupted += 1
            return
        if seq < self._base:
            gone = self._gone
            at = bisect.bisect_left(gone, seq)
            if not (at < len(gone) and gone[at] == seq) or seq in self._late:
                self.duplicates += 1
                return
            self._late.add(seq)
        else:
            index = seq & self._mask
            ring = self._ring
            if ring[index]:
                self.duplicates += 1
                return
            ring[index] = 1
        self.echoed += 1
        self.bytes_echoed += len(data)
        if seq < self.highest:
            self.reordered += 1
        else:
            self.highest = seq


def _sum_known(values: tuple[int | None, ...]) -> int:
    return sum(v for v in values if v is not None)


@attrs.frozen(kw_only=True)
class UdpAccount:
    """The end of a UDP soak: every datagram sent, accounted for.

    ``server_kernel_drops`` / ``client_kernel_drops`` are the receive-queue drops of the server's
    and the client's socket (None where the driver cannot read them); ``server_unsent`` the
    datagrams the server received but could not send back. ``server_received`` /
    ``server_sent`` / ``client_received`` are the sockets' own counts (for the per-direction
    check); ``server_received`` None when the server reported nothing.

    Example:
        >>> a = UdpAccount(sent=10, echoed=7, corrupted=0, duplicates=0, reordered=0,
        ...                server_kernel_drops=2, client_kernel_drops=0, server_unsent=1)
        >>> a.unexplained, a.failures(strict=False)
        (0, [])
        >>> attrs.evolve(a, echoed=6).failures(strict=False)
        ['1 datagram lost without a drop count to explain it']
    """

    sent: int
    echoed: int
    corrupted: int
    duplicates: int
    reordered: int
    server_kernel_drops: int | None
    client_kernel_drops: int | None
    server_unsent: int
    bytes_echoed: int = 0
    client_received: int | None = None
    server_received: int | None = None
    server_sent: int | None = None

    @property
    def never_echoed(self) -> int:
        """Sequences sent and never echoed intact."""
        return self.sent - self.echoed

    @property
    def explained(self) -> int:
        """Datagrams a counter says were dropped or not sent back, plus the corrupted arrivals
        (at most as many as are still missing: a corrupted copy of a sequence that was also
        echoed intact explains nothing)."""
        counted = _sum_known((self.server_kernel_drops, self.client_kernel_drops))
        counted += self.server_unsent
        return counted + min(self.corrupted, max(0, self.never_echoed - counted))

    @property
    def unexplained(self) -> int:
        """``never_echoed - explained``: lost with nothing counting them (negative: the counters
        claim more losses than there were, which is as wrong)."""
        return self.never_echoed - self.explained

    @property
    def to_server_unaccounted(self) -> int | None:
        """Sent by the client, neither received nor dropped by the server's socket."""
        if self.server_received is None or self.server_kernel_drops is None:
            return None
        return self.sent - self.server_received - self.server_kernel_drops

    @property
    def to_client_unaccounted(self) -> int | None:
        """Sent back by the server, neither received nor dropped by the client's socket."""
        if self.server_sent is None or self.client_received is None:
            return None
        if self.client_kernel_drops is None:
            return None
        return self.server_sent - self.client_received - self.client_kernel_drops

    def failures(self, *, strict: bool) -> list[str]:
        """Why this soak failed, one reason each; empty when it passed."""
        reasons = []
        lost = self.unexplained
        if lost > 0:
            unread = [side for side, v in (("server", self.server_kernel_drops),
                                            ("client", self.client_kernel_drops)) if v is None]
            note = f" ({' and '.join(unread)} kernel drops unreadable)" if unread else ""
            reasons.append(f"{_plural(lost, 'datagram')} lost without a drop count to explain "
                           f"it{note}")
        elif lost < 0:
            reasons.append(f"the drop counters claim {_plural(-lost, 'more datagram')} lost "
                           "than never came back")
        if self.corrupted:
            reasons.append(f"{_plural(self.corrupted, 'corrupted datagram')}")
        if strict and self.duplicates:
            reasons.append(f"{_plural(self.duplicates, 'duplicate')} (--strict)")
        if strict and self.reordered:
            reasons.append(f"{_plural(self.reordered, 'reordered datagram')} (--strict)")
        return reasons

    def to_dict(self) -> dict[str, Any]:
        """Every number, the derived ones included."""
        result: dict[str, Any] = attrs.asdict(self)
        result.update(
            never_echoed=self.never_echoed,
            explained=self.explained,
            unexplained=self.unexplained,
            to_server_unaccounted=self.to_server_unaccounted,
            to_client_unaccounted=self.to_client_unaccounted,
        )
        return result


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class TcpLedger:
    """One TCP connection's stream: what was sent and not yet echoed, compared byte for byte.

    Example:
        >>> ledger = TcpLedger()
        >>> data = ledger.records(SizePlan(20, 20), 3)
        >>> ledger.receive(data[:25]); ledger.receive(data[25:])
        >>> ledger.records_sent, ledger.records_echoed, ledger.bytes_echoed, ledger.mismatch
        (3, 3, 60, None)
    """

    def __init__(self) -> None:
        self.records_sent = 0
        self.bytes_sent = 0
        self.bytes_echoed = 0
        self.records_echoed = 0
        self.mismatch: int | None = None  # stream offset of the first wrong byte
        self.mismatch_record: int | None = None
        self._pending: deque[bytes] = deque()  # chunks sent, the first partly echoed
        self._offset = 0  # into the front chunk
        self._boundaries: deque[int] = deque()  # stream offsets where records end

    @property
    def in_flight(self) -> int:
        """Bytes sent and not yet echoed."""
        return self.bytes_sent - self.bytes_echoed

    def records(self, sizes: SizePlan, count: int) -> bytes:
        """The next ``count`` records as one chunk, counted as sent (send all of it)."""
        seq0 = self.records_sent
        parts = [make_payload(seq, sizes.size(seq)) for seq in range(seq0, seq0 + count)]
        end = self.bytes_sent
        for part in parts:
            end += len(part)
            self._boundaries.append(end)
        chunk = b"".join(parts)
        self._pending.append(chunk)
        self.records_sent += count
        self.bytes_sent += len(chunk)
        return chunk

    def receive(self, data: bytes | bytearray | memoryview) -> None:
        """Compare echoed bytes with what was sent; stops at the first difference."""
        if self.mismatch is not None:
            return
        view = memoryview(data)
        while len(view):
            if not self._pending:
                self._fail(self.bytes_echoed)  # more came back than was sent
                return
            chunk = self._pending[0]
            take = min(len(view), len(chunk) - self._offset)
            expected = memoryview(chunk)[self._offset : self._offset + take]
            got = view[:take]
            if got != expected:
                first = next(i for i in range(take) if got[i] != expected[i])
                self._fail(self.bytes_echoed + first)
                return
            self._offset += take
            self.bytes_echoed += take
            view = view[take:]
            if self._offset == len(chunk):
                self._pending.popleft()
                self._offset = 0
        boundaries = self._boundaries
        while boundaries and boundaries[0] <= self.bytes_echoed:
            boundaries.popleft()
            self.records_echoed += 1

    def _fail(self, offset: int) -> None:
        self.mismatch = offset
        # Records end at the boundaries still pending; the first one past offset holds it.
        self.mismatch_record = self.records_echoed + sum(
            1 for end in self._boundaries if end <= offset
        )


@attrs.frozen(kw_only=True)
class TcpAccount:
    """The end of a TCP soak over one or more connections.

    Example:
        >>> TcpAccount(connections=1, bytes_sent=10, bytes_echoed=10, records_sent=1,
        ...            records_echoed=1, mismatches=[], errors=[]).failures()
        []
    """

    connections: int
    bytes_sent: int
    bytes_echoed: int
    records_sent: int
    records_echoed: int
    mismatches: list[dict[str, int]]
    errors: list[str]

    @property
    def bytes_lost(self) -> int:
        """Sent and never echoed."""
        return self.bytes_sent - self.bytes_echoed

    def failures(self) -> list[str]:
        """Why this soak failed, one reason each; empty when it passed."""
        reasons = [
            f"connection {m['connection']}: echoed byte {m['offset']} (record {m['record']}) "
            "differs from the byte sent"
            for m in self.mismatches
        ]
        if self.bytes_lost and not self.mismatches:
            reasons.append(f"{self.bytes_lost} bytes sent were never echoed")
        reasons.extend(self.errors)
        return reasons

    def to_dict(self) -> dict[str, Any]:
        """Every number."""
        result: dict[str, Any] = attrs.asdict(self)
        result["bytes_lost"] = self.bytes_lost
        return result
