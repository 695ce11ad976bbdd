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
from typing import NamedTuple

from horizon_core.slab import Token

__all__ = ["Event", "Interest", "Readiness"]


class Interest(enum.IntFlag):
    """What a registered source is watched for.

    Example:
        >>> Interest.READABLE | Interest.WRITABLE
        <Interest.READABLE|WRITABLE: 3>
    """

    READABLE = 1
    WRITABLE = 2


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
