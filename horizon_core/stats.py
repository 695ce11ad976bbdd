"""Per-socket counters and batch-size histograms.

Rules this module obeys:

* :class:`Stats` is mutable and owned by one socket; pure-Python drivers update it once per call
  (never per datagram), compiled drivers keep C counters and fill it when a snapshot is taken.
* :class:`StatsSnapshot` is a frozen value: safe to hand out, compare, subtract (``after - before``)
  and serialize with ``to_dict``.
* Histogram bucket ``b`` counts batches of size ``[2**b, 2**(b+1))``; the last bucket is open-ended.
  Batch sizes are usually powers of two (64, 256, 1024), so each common size starts a bucket.

Example:
    >>> from horizon_core.stats import Stats
    >>> s = Stats()
    >>> s.record_receive(5, 1200)
    >>> snap = s.snapshot()
    >>> snap.datagrams_received, snap.recv_batch_sizes[2]
    (5, 1)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import attrs

__all__ = ["HISTOGRAM_BUCKETS", "Stats", "StatsSnapshot", "histogram_bucket"]

#: Number of batch-size histogram buckets; bucket b covers [2**b, 2**(b+1)), the last is open-ended.
HISTOGRAM_BUCKETS = 12

_LAST_BUCKET = HISTOGRAM_BUCKETS - 1


def histogram_bucket(batch_size: int) -> int:
    """The histogram bucket of a batch of ``batch_size`` (>= 1) datagrams.

    Example:
        >>> [histogram_bucket(n) for n in (1, 2, 3, 4, 1024, 2047, 2048, 10**6)]
        [0, 1, 1, 2, 10, 10, 11, 11]
    """
    if type(batch_size) is not int or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    return min(batch_size.bit_length() - 1, _LAST_BUCKET)


def _empty_histogram() -> list[int]:
    return [0] * HISTOGRAM_BUCKETS


def _count_batch(histogram: list[int], size: int) -> None:
    # histogram_bucket without its checks (the callers validated ``size``); an empty batch adds nothing.
    if size:
        histogram[min(size.bit_length() - 1, _LAST_BUCKET)] += 1


@attrs.define(slots=True, kw_only=True)
class _Counters:
    """The integer counters :class:`Stats` and :class:`StatsSnapshot` both carry, declared once."""

    datagrams_received: int = 0
    bytes_received: int = 0
    datagrams_sent: int = 0
    bytes_sent: int = 0
    truncated: int = 0
    recv_calls: int = 0
    send_calls: int = 0
    would_block: int = 0
    partial_sends: int = 0
    errors: int = 0
    #: MSG_ZEROCOPY sends made; completions the kernel reported for them; completions that said
    #: the kernel copied anyway (SO_EE_CODE_ZEROCOPY_COPIED: loopback, local delivery, a device
    #: without scatter-gather); zero-copy sends refused for lack of option memory (ENOBUFS) and
    #: sent by copying instead; and sends still in flight when the socket closed, whose
    #: completion can no longer be read.
    zerocopy_sends: int = 0
    zerocopy_completions: int = 0
    zerocopy_copied: int = 0
    zerocopy_fallbacks: int = 0
    zerocopy_abandoned: int = 0

    def _counter_values(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _COUNTERS}


# The integer counters, in the order snapshots and to_dict list them.
_COUNTERS: Final = tuple(field.name for field in attrs.fields(_Counters))


@attrs.define(slots=True, kw_only=True)
class Stats(_Counters):
    """Mutable counters of one socket.

    ``kernel_drops`` is the latest SO_RXQ_OVFL count (datagrams the kernel dropped because the
    receive buffer was full), or None when the driver cannot read it.

    Example:
        >>> s = Stats()
        >>> s.record_send(requested=8, sent=3, nbytes=300)
        >>> s.partial_sends, s.datagrams_sent, s.send_batch_sizes[1]
        (1, 3, 1)
    """

    kernel_drops: int | None = None
    recv_batch_sizes: list[int] = attrs.field(factory=_empty_histogram)
    send_batch_sizes: list[int] = attrs.field(factory=_empty_histogram)

    def record_receive(self, datagrams: int, nbytes: int, truncated: int = 0) -> None:
        """Count one receive call that returned ``datagrams`` datagrams of ``nbytes`` in total.

        A call that returned nothing counts as a call but adds no histogram entry.

        Example:
            >>> s = Stats()
            >>> s.record_receive(1, 70000, truncated=1)
            >>> s.recv_calls, s.truncated, s.recv_batch_sizes[0]
            (1, 1, 1)
        """
        if datagrams < 0 or nbytes < 0 or not 0 <= truncated <= datagrams:
            raise ValueError(
                "record_receive needs datagrams >= 0, nbytes >= 0 and 0 <= truncated <= datagrams,"
                f" got datagrams={datagrams}, nbytes={nbytes}, truncated={truncated}"
            )
        self.recv_calls += 1
        self.datagrams_received += datagrams
        self.bytes_received += nbytes
        self.truncated += truncated
        _count_batch(self.recv_batch_sizes, datagrams)

    def record_send(self, requested: int, sent: int, nbytes: int) -> None:
        """Count one send call asked for ``requested`` datagrams that sent ``sent`` (``nbytes``).

        ``sent < requested`` counts as a partial send (sendmmsg stopped early).

        Example:
            >>> s = Stats()
            >>> s.record_send(requested=4, sent=4, nbytes=400)
            >>> s.partial_sends, s.send_batch_sizes[2]
            (0, 1)
        """
        if not 0 <= sent <= requested or nbytes < 0:
            raise ValueError(
                "record_send needs 0 <= sent <= requested and nbytes >= 0,"
                f" got requested={requested}, sent={sent}, nbytes={nbytes}"
            )
        self.send_calls += 1
        if sent < requested:
            self.partial_sends += 1
        self.datagrams_sent += sent
        self.bytes_sent += nbytes
        _count_batch(self.send_batch_sizes, sent)

    def count_send(self, send: Callable[[], int]) -> int:
        """Run one single-datagram ``send()`` and count it: its bytes, or its error, re-raised.

        Example:
            >>> s = Stats()
            >>> s.count_send(lambda: 5), s.bytes_sent
            (5, 5)
        """
        try:
            nbytes = send()
        except OSError as exc:
            self.record_send(1, 0, 0)
            self._count_error(exc)
            raise
        self.record_send(1, 1, nbytes)
        return nbytes

    def finish_batch_send(self, requested: int, sent: int, nbytes: int, error: OSError | None) -> int:
        """Count a batch send that stopped at ``error`` (None: it did not); return ``sent``.

        As sendmmsg: an error after at least one datagram went ends the batch early and is not
        raised; an error on the first is raised, counted in ``would_block`` (BlockingIOError) or
        ``errors``.

        Example:
            >>> s = Stats()
            >>> s.finish_batch_send(3, 1, 10, BlockingIOError()), s.partial_sends, s.would_block
            (1, 1, 0)
        """
        self.record_send(requested, sent, nbytes)
        if sent or error is None:
            return sent
        self._count_error(error)
        raise error

    def _count_error(self, error: OSError) -> None:
        if isinstance(error, BlockingIOError):
            self.would_block += 1
        else:
            self.errors += 1

    def snapshot(self) -> StatsSnapshot:
        """A frozen copy of the current values.

        Example:
            >>> Stats().snapshot().recv_calls
            0
        """
        return StatsSnapshot(
            **self._counter_values(),
            kernel_drops=self.kernel_drops,
            recv_batch_sizes=tuple(self.recv_batch_sizes),
            send_batch_sizes=tuple(self.send_batch_sizes),
        )


def _zero_histogram() -> tuple[int, ...]:
    return (0,) * HISTOGRAM_BUCKETS


@attrs.frozen(slots=True, kw_only=True)
class StatsSnapshot(_Counters):
    """A frozen copy of :class:`Stats`; ``after - before`` gives the activity in between.

    Example:
        >>> s = Stats()
        >>> before = s.snapshot()
        >>> s.record_receive(2, 100)
        >>> (s.snapshot() - before).bytes_received
        100
    """

    kernel_drops: int | None = None
    recv_batch_sizes: tuple[int, ...] = attrs.field(factory=_zero_histogram)
    send_batch_sizes: tuple[int, ...] = attrs.field(factory=_zero_histogram)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (histograms as lists).

        Example:
            >>> StatsSnapshot().to_dict()["recv_batch_sizes"][:3]
            [0, 0, 0]
        """
        result: dict[str, Any] = self._counter_values()
        result["kernel_drops"] = self.kernel_drops
        result["recv_batch_sizes"] = list(self.recv_batch_sizes)
        result["send_batch_sizes"] = list(self.send_batch_sizes)
        return result

    def __sub__(self, other: StatsSnapshot) -> StatsSnapshot:
        """The counts accumulated between ``other`` (earlier) and ``self`` (later).

        ``kernel_drops`` is a cumulative kernel counter: its delta is ``self - other`` when both
        are known, ``self``'s value when ``other`` had none, and None when ``self`` has none.

        Example:
            >>> (StatsSnapshot(errors=3, kernel_drops=9) - StatsSnapshot(errors=1)).errors
            2
        """
        if not isinstance(other, StatsSnapshot):
            return NotImplemented
        counters = {name: getattr(self, name) - getattr(other, name) for name in _COUNTERS}
        if self.kernel_drops is None or other.kernel_drops is None:
            drops = self.kernel_drops
        else:
            drops = self.kernel_drops - other.kernel_drops
        return StatsSnapshot(
            **counters,
            kernel_drops=drops,
            recv_batch_sizes=tuple(
                a - b for a, b in zip(self.recv_batch_sizes, other.recv_batch_sizes, strict=True)
            ),
            send_batch_sizes=tuple(
                a - b for a, b in zip(self.send_batch_sizes, other.send_batch_sizes, strict=True)
            ),
        )
