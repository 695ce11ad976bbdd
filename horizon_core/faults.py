"""Network faults as data: what a simulated network does wrong, and the pure decisions it draws.

Rules this module obeys:

* A :class:`FaultPlan` is a frozen, validated value: every probability is a number in ``0..1``,
  every delay range is a pair ``(low, high)`` of finite virtual seconds with ``0 <= low <= high``.
  All bad fields are reported at once in one :class:`~horizon_core.errors.ConfigError`.
* Nothing here reads a clock, opens a socket or starts a thread. Randomness comes only from the
  :class:`RandomSource` the caller passes in (``random.Random(seed)`` in the sim driver), and each
  decision draws from it in the fixed order its docstring states, so a run replays from its seed.
* A probability of exactly 0 draws nothing: ``FaultPlan.none()`` never touches the random source.

What each fault means (the simulated network in ``horizon_drivers.sim`` applies them):

* ``loss``: the datagram vanishes in the network.
* ``duplication``: the network delivers one extra copy; the copy is its own send (its own loss,
  truncation and delay draws) and is counted as such.
* ``reordering`` with ``reorder_delay``: a fraction of datagrams get an extra random delay, so
  later datagrams overtake them.
* ``latency``: the one-way delay of every datagram and TCP segment, uniform in ``(low, high)``.
* ``truncation``: a middlebox cuts the datagram to a random *shorter* prefix. It arrives as a
  shorter datagram and the receiver cannot tell (no flag: the true length is lost in the network).
  This is unlike the receiver's own slot-size truncation, which the driver flags with the true
  length, as the kernel does with MSG_TRUNC.
* ``port_unreachable``: the network answers a datagram with ICMP port-unreachable as if nothing
  listened there (the datagram is dropped; a *connected* sender's next send/recv raises
  ConnectionRefusedError, as on Linux). Sending to a port that really has no socket always does
  this, with or without the fault.
* ``send_eagain`` / ``send_enobufs`` / ``recv_eagain``: a send or receive call fails with EAGAIN
  (``BlockingIOError``) or ENOBUFS although it could have succeeded.
* ``partial_write``: a TCP send accepts only part of what it was offered.

Example:
    >>> import random
    >>> plan = FaultPlan(loss=0.5, latency=(0.001, 0.002))
    >>> fate = plan.datagram_fate(random.Random(7), 100)
    >>> fate.lost or 0.001 <= fate.delay <= 0.002
    True
"""

from __future__ import annotations

import errno as _errno
import math
from collections.abc import Iterable
from typing import Any, Protocol

import attrs

from horizon_core.errors import ConfigError, FieldProblem

__all__ = ["DatagramFate", "FaultPlan", "RandomSource"]

# The longest delay a plan may ask for: an hour of virtual time is far beyond any protocol timer,
# and a bound keeps float arithmetic on the virtual clock exact enough to compare times.
_MAX_DELAY = 3600.0

_PROBABILITIES = (
    "loss",
    "duplication",
    "reordering",
    "truncation",
    "port_unreachable",
    "send_eagain",
    "send_enobufs",
    "recv_eagain",
    "partial_write",
)
_RANGES = ("latency", "reorder_delay")
_PROBABILITY_ALLOWED = "a number from 0 to 1 (int or float, not bool)"
_RANGE_ALLOWED = f"a pair (low, high) of seconds with 0 <= low <= high <= {_MAX_DELAY:g}"


class RandomSource(Protocol):
    """Where decisions get their randomness: anything with ``random()``, e.g. ``random.Random``.

    Example:
        >>> import random
        >>> isinstance(random.Random(1).random(), float)
        True
    """

    def random(self) -> float:
        """A float uniformly drawn from ``[0, 1)``."""
        ...


def _to_pair(value: Any) -> Any:
    """Store ranges as tuples; leave anything unconvertible for validation to report."""
    if isinstance(value, list):
        return tuple(value)
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _probability_ok(value: object) -> bool:
    return _is_number(value) and 0 <= value <= 1  # type: ignore[operator]


def _range_ok(value: object) -> bool:
    if not isinstance(value, tuple) or len(value) != 2:
        return False
    low, high = value
    return _is_number(low) and _is_number(high) and 0 <= low <= high <= _MAX_DELAY


def _uniform(rng: RandomSource, low: float, high: float) -> float:
    # Drawn even when low == high so the number of draws depends only on the plan, not the range.
    return low + (high - low) * rng.random()


def _hit(rng: RandomSource, probability: float) -> bool:
    # A zero probability draws nothing: FaultPlan.none() never consumes randomness.
    return probability > 0 and rng.random() < probability


@attrs.frozen(slots=True)
class DatagramFate:
    """What the network decided for one datagram (see :meth:`FaultPlan.datagram_fate`).

    ``length`` is how many bytes arrive (shorter than sent when ``truncated``); ``delay`` is the
    total one-way delay in virtual seconds, including any reordering delay.

    Example:
        >>> DatagramFate(lost=False, port_unreachable=False, truncated=False, length=3,
        ...              delay=0.0, reordered=False, duplicated=False).delivers
        True
    """

    lost: bool
    port_unreachable: bool
    truncated: bool
    length: int
    delay: float
    reordered: bool
    duplicated: bool

    @property
    def delivers(self) -> bool:
        """True when the datagram reaches the destination host (neither lost nor refused).

        Example:
            >>> DatagramFate(True, False, False, 3, 0.0, False, False).delivers
            False
        """
        return not (self.lost or self.port_unreachable)


@attrs.frozen(slots=True, kw_only=True)
class FaultPlan:
    """The faults a simulated network injects; probabilities 0..1, delays in virtual seconds.

    ``FaultPlan()`` and ``FaultPlan.none()`` are a perfect, zero-latency network. Edit with
    ``attrs.evolve`` (which re-validates).

    Example:
        >>> plan = FaultPlan(loss=0.1, reordering=0.2, reorder_delay=(0.0, 0.05))
        >>> plan.loss, plan.is_none
        (0.1, False)
        >>> try:
        ...     FaultPlan(loss=1.5, latency=(2, 1))
        ... except ConfigError as exc:
        ...     print(exc.fields)
        ('loss', 'latency')
    """

    loss: float = 0.0
    duplication: float = 0.0
    reordering: float = 0.0
    reorder_delay: tuple[float, float] = attrs.field(default=(0.0, 0.0), converter=_to_pair)
    latency: tuple[float, float] = attrs.field(default=(0.0, 0.0), converter=_to_pair)
    truncation: float = 0.0
    port_unreachable: float = 0.0
    send_eagain: float = 0.0
    send_enobufs: float = 0.0
    recv_eagain: float = 0.0
    partial_write: float = 0.0

    def __attrs_post_init__(self) -> None:
        problems: list[FieldProblem] = []
        for name in _PROBABILITIES:
            value = getattr(self, name)
            if not _probability_ok(value):
                problems.append(FieldProblem(name, value, _PROBABILITY_ALLOWED))
        for name in _RANGES:
            value = getattr(self, name)
            if not _range_ok(value):
                problems.append(FieldProblem(name, value, _RANGE_ALLOWED))
        if (
            _probability_ok(self.reordering)
            and self.reordering > 0
            and _range_ok(self.reorder_delay)
            and self.reorder_delay[1] == 0
        ):
            # Reordering with no extra delay would silently do nothing: almost surely a mistake.
            problems.append(
                FieldProblem(
                    "reorder_delay",
                    self.reorder_delay,
                    "a range with a positive high end when reordering > 0",
                )
            )
        if problems:
            raise ConfigError(_field_order(problems), what="FaultPlan")

    @classmethod
    def none(cls) -> FaultPlan:
        """A perfect network: nothing lost, nothing late, no call ever fails by chance.

        Example:
            >>> FaultPlan.none() == FaultPlan(), FaultPlan.none().is_none
            (True, True)
        """
        return cls()

    @property
    def is_none(self) -> bool:
        """True when the plan injects nothing (every probability 0 and zero latency).

        Example:
            >>> FaultPlan(latency=(0.0, 0.01)).is_none
            False
        """
        return self == FaultPlan()

    def datagram_fate(self, rng: RandomSource, size: int, *, copy: bool = False) -> DatagramFate:
        """Decide what the network does to one datagram of ``size`` bytes.

        Draw order (each only when its probability is above 0): loss (a lost datagram draws
        nothing more), port_unreachable (likewise), truncation then the kept length, latency
        (always one draw), reordering then its extra delay, duplication (skipped for a ``copy``,
        so copies never multiply).

        Example:
            >>> import random
            >>> FaultPlan(truncation=1.0).datagram_fate(random.Random(3), 10).length < 10
            True
            >>> FaultPlan().datagram_fate(random.Random(3), 10)
            DatagramFate(lost=False, port_unreachable=False, truncated=False, length=10, delay=0.0, reordered=False, duplicated=False)
        """  # noqa: E501
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        if _hit(rng, self.loss):
            return DatagramFate(True, False, False, size, 0.0, False, False)
        if _hit(rng, self.port_unreachable):
            return DatagramFate(False, True, False, size, 0.0, False, False)
        length = size
        truncated = False
        # An empty datagram has no shorter prefix; it cannot be truncated.
        if size > 0 and _hit(rng, self.truncation):
            truncated = True
            length = min(int(rng.random() * size), size - 1)
        delay = self.latency_delay(rng)
        reordered = _hit(rng, self.reordering)
        if reordered:
            delay += _uniform(rng, *self.reorder_delay)
        duplicated = not copy and _hit(rng, self.duplication)
        return DatagramFate(False, False, truncated, length, delay, reordered, duplicated)

    def latency_delay(self, rng: RandomSource) -> float:
        """One latency draw in ``latency`` (no draw when the range is ``(0, 0)``).

        Used for TCP segments, which the network never loses, duplicates or reorders (TCP
        hides those), only delays.

        Example:
            >>> import random
            >>> 1.0 <= FaultPlan(latency=(1.0, 2.0)).latency_delay(random.Random(1)) <= 2.0
            True
        """
        low, high = self.latency
        if high == 0:
            return 0.0
        return _uniform(rng, low, high)

    def send_error(self, rng: RandomSource) -> int | None:
        """An errno a UDP send fails with by chance (EAGAIN, then ENOBUFS, drawn in that order).

        Example:
            >>> import errno, random
            >>> FaultPlan(send_enobufs=1.0).send_error(random.Random(1)) == errno.ENOBUFS
            True
        """
        if _hit(rng, self.send_eagain):
            return _errno.EAGAIN
        if _hit(rng, self.send_enobufs):
            return _errno.ENOBUFS
        return None

    def stream_send_blocks(self, rng: RandomSource) -> bool:
        """True when a TCP send fails with EAGAIN by chance (``send_eagain``).

        Example:
            >>> import random
            >>> FaultPlan().stream_send_blocks(random.Random(1))
            False
        """
        return _hit(rng, self.send_eagain)

    def recv_blocks(self, rng: RandomSource) -> bool:
        """True when a receive fails with EAGAIN by chance although data waits (``recv_eagain``).

        Example:
            >>> import random
            >>> FaultPlan(recv_eagain=1.0).recv_blocks(random.Random(1))
            True
        """
        return _hit(rng, self.recv_eagain)

    def accepted_bytes(self, rng: RandomSource, offered: int) -> int:
        """How many of ``offered`` bytes a TCP send takes: ``offered``, or 1..offered-1 on a
        partial write (only drawn when ``offered >= 2``).

        Example:
            >>> import random
            >>> 1 <= FaultPlan(partial_write=1.0).accepted_bytes(random.Random(1), 10) < 10
            True
        """
        if offered < 2 or not _hit(rng, self.partial_write):
            return offered
        return 1 + min(int(rng.random() * (offered - 1)), offered - 2)

    def to_mapping(self) -> dict[str, object]:
        """The plan as a plain dict (ranges as lists), e.g. to log next to a seed.

        Example:
            >>> FaultPlan(loss=0.25).to_mapping()["loss"]
            0.25
        """
        result: dict[str, object] = {}
        for field in attrs.fields(FaultPlan):
            value = getattr(self, field.name)
            result[field.name] = list(value) if isinstance(value, tuple) else value
        return result


def _field_order(problems: Iterable[FieldProblem]) -> list[FieldProblem]:
    """Report problems in field declaration order, each field once."""
    names = [field.name for field in attrs.fields(FaultPlan)]
    order = {name: index for index, name in enumerate(names)}
    seen: dict[str, FieldProblem] = {}
    for problem in problems:
        seen.setdefault(problem.field, problem)
    return sorted(seen.values(), key=lambda p: order[p.field])
