"""One error hierarchy for the whole library.

Rules this module obeys:

* Every error raised on purpose by horizon_core or a driver derives from :class:`HorizonError`.
* Each error also derives from the builtin a caller would already catch: a bad config is a
  ``ValueError``, a socket-level failure is an ``OSError``, a stale token is a ``KeyError``.
* Would-block is never wrapped: drivers raise the builtin ``BlockingIOError`` unchanged, so the
  idiom ``except BlockingIOError`` works everywhere.

Example:
    >>> from horizon_core import ConfigError, NetConfig
    >>> try:
    ...     NetConfig(tos=300)
    ... except ConfigError as exc:
    ...     print(exc.problems[0].field)
    tos
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Iterable

import attrs

__all__ = [
    "ConfigError",
    "FieldProblem",
    "HorizonError",
    "OptionError",
    "PoolExhaustedError",
    "SlotStateError",
    "SocketClosedError",
    "StaleTokenError",
]


class HorizonError(Exception):
    """Base class of every error Horizon Sockets raises on purpose."""


#: How much of a rejected value a message repeats: enough to recognise it, never a flood.
_SHOWN = 60


@attrs.frozen
class FieldProblem:
    """One invalid configuration field: its name, the rejected value and what is allowed.

    Example:
        >>> FieldProblem("tos", 300, "an int from 0 to 255, or None").describe()
        'tos=300: expected an int from 0 to 255, or None'
    """

    field: str
    value: object
    allowed: str

    def describe(self) -> str:
        """Return ``field=value: expected allowed`` for messages; a long value is cut.

        Example:
            >>> text = FieldProblem("tos", "x" * 100_000, "an int").describe()
            >>> len(text) < 120, text.endswith("... (100002 characters): expected an int")
            (True, True)
        """
        shown = repr(self.value)
        if len(shown) > _SHOWN:
            shown = f"{shown[:_SHOWN]}... ({len(shown)} characters)"
        return f"{self.field}={shown}: expected {self.allowed}"


class ConfigError(HorizonError, ValueError):
    """A configuration was rejected; ``problems`` names every bad field at once.

    Example:
        >>> err = ConfigError([FieldProblem("tos", 300, "0-255")])
        >>> str(err)
        'invalid NetConfig: tos=300: expected 0-255'
    """

    def __init__(self, problems: Iterable[FieldProblem], *, what: str = "NetConfig") -> None:
        self.problems: tuple[FieldProblem, ...] = tuple(problems)
        self.what = what
        detail = "; ".join(p.describe() for p in self.problems)
        super().__init__(f"invalid {what}: {detail}")

    @property
    def fields(self) -> tuple[str, ...]:
        """The names of the rejected fields, in the order they were found."""
        return tuple(p.field for p in self.problems)


class SlotStateError(HorizonError, RuntimeError):
    """An operation was attempted on a buffer slot in a state that does not allow it.

    The pool is left exactly as it was before the call.
    """

    def __init__(self, slot: int, state: str, operation: str, allowed_from: Iterable[str]) -> None:
        self.slot = slot
        self.state = state
        self.operation = operation
        self.allowed_from = tuple(allowed_from)
        allowed = ", ".join(self.allowed_from) or "no state"
        super().__init__(
            f"cannot {operation} slot {slot}: it is {state}; {operation} is allowed from {allowed}"
        )


class PoolExhaustedError(HorizonError, MemoryError):
    """A BufferPool has no room for the requested batch or slot."""


class StaleTokenError(HorizonError, KeyError):
    """A token does not name a live entry: it was removed, or never issued by this slab."""

    def __str__(self) -> str:
        # KeyError.__str__ quotes its argument; a sentence reads better.
        return str(self.args[0]) if self.args else "stale token"


class SocketClosedError(HorizonError, OSError):
    """An operation was attempted on a closed socket or runtime.

    It is an ``OSError`` with ``errno`` EBADF, as the standard library raises for a closed
    socket, so existing handlers keep working.
    """

    def __init__(self, what: str = "socket", operation: str = "use") -> None:
        super().__init__(_errno.EBADF, f"cannot {operation} a closed {what}")
        self.operation = operation


class OptionError(HorizonError, OSError):
    """The kernel refused a socket option that the configuration explicitly required.

    ``option`` is the option's name (``SO_BUSY_POLL``), ``field`` the NetConfig field that asked for it.
    """

    def __init__(self, field: str, option: str, err: int, detail: str) -> None:
        super().__init__(err, f"{option} (NetConfig.{field}) was refused: {detail}")
        self.field = field
        self.option = option
