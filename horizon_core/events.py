"""Readiness events: what a Runtime is asked to watch for, and what it reports.

Rules this module obeys:

* ``Interest`` is what a caller registers; ``Readiness`` is what a poll reports. They share the
  READABLE/WRITABLE bits so ``readiness & interest`` is meaningful.
* ``Event`` is a NamedTuple, not an attrs class: drivers build one per ready socket per poll, and a
  tuple is the cheapest immutable record CPython can build.

Example:
    >>> from horizon_core.events import Event, Readiness
    >>> from horizon_core.slab import Token
    >>> ev = Event(Token(1 << 32), Readiness.READABLE | Readiness.HANGUP)
    >>> ev.readable, ev.writable, ev.hangup
    (True, False, True)
"""

from __future__ import annotations

import enum
import math
from typing import NamedTuple

from horizon_core.slab import Token

__all__ = ["MAX_POLL_TIMEOUT", "Event", "Interest", "Readiness", "check_interest", "check_timeout"]


class Interest(enum.IntFlag):
    """What a registered source is watched for.

    Example:
        >>> Interest.READABLE | Interest.WRITABLE
        <Interest.READABLE|WRITABLE: 3>
    """

    READABLE = 1
    WRITABLE = 2


#: The longest finite poll, in seconds: epoll_wait takes an int of milliseconds.
MAX_POLL_TIMEOUT = (2**31 - 1) // 1000


def check_interest(interest: object) -> Interest:
    """``interest`` as an Interest, for ``register``/``reregister`` on every driver.

    TypeError for what is not an int flag; ValueError for no interest at all or unknown bits
    (a registration that can never report anything is a mistake, not a request).

    Example:
        >>> check_interest(3)
        <Interest.READABLE|WRITABLE: 3>
        >>> check_interest(Interest(0))
        Traceback (most recent call last):
        ...
        ValueError: interest must be Interest.READABLE, Interest.WRITABLE or both, got <Interest: 0>
    """
    if isinstance(interest, bool) or not isinstance(interest, int):
        raise TypeError(f"interest must be an Interest, not {type(interest).__name__}")
    if interest not in (1, 2, 3):
        raise ValueError(
            f"interest must be Interest.READABLE, Interest.WRITABLE or both, got {interest!r}"
        )
    return Interest(interest)


def check_timeout(timeout: object) -> float | None:
    """A poll timeout for every driver's ``poll_once``: None (until ready) or seconds >= 0.

    TypeError for what is not a number (``True`` and ``"1"`` included: neither is a duration);
    ValueError for negative, NaN, infinite (None already waits until ready) or longer than
    :data:`MAX_POLL_TIMEOUT`.

    Example:
        >>> check_timeout(0), check_timeout(None), check_timeout(2)
        (0.0, None, 2.0)
        >>> check_timeout(True)
        Traceback (most recent call last):
        ...
        TypeError: timeout must be None or a number of seconds, not bool
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be None or a number of seconds, not {type(timeout).__name__}")
    if not (math.isfinite(timeout) and 0 <= timeout <= MAX_POLL_TIMEOUT):
        raise ValueError(
            f"timeout must be None (until ready) or seconds from 0 to {MAX_POLL_TIMEOUT}, "
            f"got {timeout!r}"
        )
    return float(timeout)


class Readiness(enum.IntFlag):
    """What a poll found: readable, writable, an error pending (EPOLLERR), or hung up (EPOLLHUP).

    Example:
        >>> Readiness.ERROR in Readiness(5)
        True
    """

    READABLE = 1
    WRITABLE = 2
    ERROR = 4
    HANGUP = 8


class Event(NamedTuple):
    """One ready source: its token and what it is ready for.

    Example:
        >>> Event(Token(1 << 32), Readiness.WRITABLE).writable
        True
    """

    token: Token
    readiness: Readiness

    @property
    def readable(self) -> bool:
        """True when a read would not block (data, end of stream, or an error to collect).

        Example:
            >>> Event(Token(1 << 32), Readiness.READABLE | Readiness.WRITABLE).readable
            True
        """
        return bool(self.readiness & Readiness.READABLE)

    @property
    def writable(self) -> bool:
        """True when a write would not block.

        Example:
            >>> only_readable = Event(Token(1 << 32), Readiness.READABLE)
            >>> only_readable.writable
            False
        """
        return bool(self.readiness & Readiness.WRITABLE)

    @property
    def error(self) -> bool:
        """True when the socket has a pending error (read it with a recv or SO_ERROR).

        Example:
            >>> Event(Token(1 << 32), Readiness.ERROR).error
            True
        """
        return bool(self.readiness & Readiness.ERROR)

    @property
    def hangup(self) -> bool:
        """True when the peer hung up (both directions are closed).

        Example:
            >>> [Event(Token(1 << 32), r).hangup for r in (Readiness.HANGUP, Readiness.ERROR)]
            [True, False]
        """
        return bool(self.readiness & Readiness.HANGUP)
