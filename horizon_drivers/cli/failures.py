"""What the ``horizon`` command says when it cannot do what was asked: one line, exit status 2.

Rules this module obeys:

* A failure the user can fix (a bad address, a port in use, an unknown driver, a bad config key)
  is reported as one line on stderr and exit status 2. Never a traceback.
* Commands raise :class:`CommandError` for problems they detect themselves; :func:`explain` turns
  the library's own exceptions (``ConfigError``, ``OSError`` from bind...) into the same one line.
* Anything else is a bug and keeps its traceback, so it gets reported rather than hidden.

Example:
    >>> explain(CommandError("unknown driver 'x'"))
    "unknown driver 'x'"
"""

from __future__ import annotations

import errno

from horizon_core.errors import ConfigError, OptionError
from horizon_drivers.registry import DriverUnavailableError

__all__ = ["EXIT_FAILURE", "CommandError", "explain"]

#: Exit status for every failure the user can fix (argparse uses the same for usage errors).
EXIT_FAILURE = 2

# errno -> what it means for a command that binds or connects; the kernel's own strerror
# ("Address already in use") is kept after it, since it is what people search for.
_SOCKET_ERRNO_HINTS = {
    errno.EADDRINUSE: "port in use",
    errno.EADDRNOTAVAIL: "address not available on this host",
    errno.EACCES: "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)",
    errno.EPERM: "operation not permitted",
    errno.ECONNREFUSED: "connection refused",
    errno.EAFNOSUPPORT: "address family not supported on this host",
}


class CommandError(Exception):
    """A failure the user can fix, reported as one line (the message) and exit status 2.

    Example:
        >>> str(CommandError("--workers must be at least 1"))
        '--workers must be at least 1'
    """


def explain(exc: BaseException) -> str | None:
    """The one line to print for ``exc``, or None when it is a bug that should keep its traceback.

    Example:
        >>> import errno
        >>> explain(OSError(errno.EADDRINUSE, "Address already in use"))
        'port in use: Address already in use'
        >>> explain(ZeroDivisionError()) is None
        True
    """
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return explain(exc.exceptions[0])  # a task group around a single failure
    if isinstance(exc, CommandError):
        return _one_line(str(exc))
    if isinstance(exc, ConfigError | DriverUnavailableError):
        return _one_line(str(exc))
    if isinstance(exc, OptionError):
        return _one_line(f"required socket option refused: {exc.strerror}")
    if isinstance(exc, OSError):
        hint = _SOCKET_ERRNO_HINTS.get(exc.errno or 0)
        detail = exc.strerror or str(exc)
        if exc.filename is not None:
            detail = f"{exc.filename}: {detail}"
        return _one_line(f"{hint}: {detail}" if hint else detail)
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())
