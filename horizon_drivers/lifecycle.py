"""The end of a driver object's life, written once for the Python drivers.

Rules this module obeys:

* A :class:`Closeable` says whether it is ``closed`` and has an idempotent ``close()``; this
  module adds the rest: ``with`` closes it, and ``_check_open`` raises
  :class:`~horizon_core.errors.SocketClosedError` (naming the object, ``_what``, and the operation)
  for any operation after ``close()``, never a crash or an OS error about a reused descriptor.
* Nothing here opens, reads or closes an OS object: each driver's ``close()`` knows what it holds.

Example:
    >>> class Thing(Closeable):
    ...     _what = "thing"
    ...     def __init__(self) -> None:
    ...         self._closed = False
    ...     @property
    ...     def closed(self) -> bool:
    ...         return self._closed
    ...     def close(self) -> None:
    ...         self._closed = True
    >>> with Thing() as thing:
    ...     thing._check_open("poke")
    >>> thing._check_open("poke")
    Traceback (most recent call last):
    ...
    horizon_core.errors.SocketClosedError: [Errno 9] cannot poke a closed thing
"""

from __future__ import annotations

from types import TracebackType
from typing import ClassVar, Self

from horizon_core.errors import SocketClosedError

__all__ = ["Closeable", "ReleaseOnce"]


class Closeable:
    """A mixin: context-manager support and the closed check over ``closed``/``close()``."""

    __slots__ = ()

    #: What ``SocketClosedError`` calls the object ("cannot send on a closed UDP socket").
    _what: ClassVar[str] = "socket"

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the object holds. Idempotent."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self, operation: str) -> None:
        if self.closed:
            raise SocketClosedError(self._what, operation)


class ReleaseOnce(Closeable):
    """A :class:`Closeable` whose ``close()`` sets a flag and calls ``_release()`` the first time.

    For objects whose closed state is just that flag; ``_release`` gives back what they hold.

    Example:
        >>> class Lease(ReleaseOnce):
        ...     _what = "lease"
        ...     def _release(self) -> None:
        ...         print("released")
        >>> lease = Lease()
        >>> lease.close(); lease.close()
        released
        >>> lease.closed
        True
    """

    # A class default, so subclasses need not set it; close() sets it on the instance.
    _closed: bool = False

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran."""
        return self._closed

    def close(self) -> None:
        """Release what the object holds; later operations raise SocketClosedError. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._release()

    def _release(self) -> None:
        raise NotImplementedError
