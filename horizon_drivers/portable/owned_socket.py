"""The stdlib socket each portable socket object owns, and what follows from owning it.

Rules this module obeys:

* An :class:`OwnedSocket` holds one ``socket.socket`` until ``close()``, which closes it once;
  afterwards ``fileno()`` is -1 (as the stdlib socket and the native driver) and ``_live`` raises
  :class:`~horizon_core.errors.SocketClosedError` instead of returning it.
* The option report the socket was opened with stays readable after close.

Example:
    >>> import socket
    >>> from horizon_core.options import OptionReport
    >>> owned = OwnedSocket(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), OptionReport(()))
    >>> with owned:
    ...     owned.fileno() >= 0
    True
    >>> owned.closed, owned.fileno()
    (True, -1)
"""

from __future__ import annotations

import socket

from horizon_core.errors import SocketClosedError
from horizon_core.options import OptionReport
from horizon_drivers.lifecycle import Closeable

__all__ = ["OwnedSocket"]


class OwnedSocket(Closeable):
    """The base of the portable UDP and TCP objects: the socket, ``closed``, ``close``, ``with``."""

    def __init__(self, sock: socket.socket, options: OptionReport) -> None:
        self._sock: socket.socket | None = sock
        self._options = options

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran."""
        return self._sock is None

    def close(self) -> None:
        """Close the socket. Idempotent."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _live(self, operation: str) -> socket.socket:
        sock = self._sock
        if sock is None:
            raise SocketClosedError(self._what, operation)
        return sock

    def fileno(self) -> int:
        """The OS descriptor, or -1 once closed (as the stdlib socket and the native driver)."""
        return -1 if self._sock is None else self._sock.fileno()

    @property
    def options(self) -> OptionReport:
        """What the config asked for and what the kernel did with it."""
        return self._options
