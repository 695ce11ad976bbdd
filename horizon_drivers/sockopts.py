"""Socket option numbers for this platform, and applying a plan's settings to a real socket.

Rules this module obeys:

* The core names options (``"SO_BUSY_POLL"`` at ``Level.SOCKET``); this module owns the numbers.
  Each comes from the stdlib ``socket`` module when it has the constant, else from the Linux
  headers (``asm-generic/socket.h``, ``linux/udp.h``) on Linux only: a number guessed for another
  OS could silently set an unrelated option there.
* Applying a setting records exactly what the kernel said: the errno of a refused setsockopt is
  kept in the :class:`~horizon_core.options.Observation`, never swallowed; a refused setting with
  a fallback (SO_RCVBUFFORCE -> SO_RCVBUF) tries the fallback and says so.
* An option this platform has no number for is observed as ENOPROTOOPT ("not supported"), the
  answer the kernel itself gives for an unknown option.
* Pure stdlib ``socket``: the portable, anyio and native drivers all open sockets through here.

Example:
    >>> import socket
    >>> from horizon_core.config import NetConfig
    >>> from horizon_core.options import Family, SocketKind, plan_options
    >>> plan = plan_options(NetConfig(), Family.IPV4, SocketKind.UDP, current_platform())
    >>> with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    ...     observed = apply_settings(sock, plan.before_bind())
    >>> observed["SO_REUSEPORT"].effective
    1
"""

from __future__ import annotations

import errno
import functools
import socket
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final, Protocol

from horizon_core.options import KernelLimits, Level, Observation, OptionSetting, Platform

__all__ = [
    "LEVEL_NUMBERS",
    "LINUX_OPTION_NUMBERS",
    "OPTION_NUMBERS",
    "READBACK_NAMES",
    "OptionSocket",
    "apply_setting",
    "apply_settings",
    "current_platform",
    "option_number",
    "read_back",
    "read_kernel_drops",
    "read_kernel_limits",
]


class OptionSocket(Protocol):
    """What :func:`apply_settings` needs from a socket (``socket.socket`` has it; tests fake it)."""

    def setsockopt(self, level: int, optname: int, value: int, /) -> None:
        """Set an integer option."""
        ...

    def getsockopt(self, level: int, optname: int, /) -> int:
        """Read an integer option."""
        ...


#: Protocol levels (SOL_SOCKET, IPPROTO_*): every platform's socket module has these.
LEVEL_NUMBERS: Final[Mapping[Level, int]] = {
    Level.SOCKET: socket.SOL_SOCKET,
    Level.IP: socket.IPPROTO_IP,
    Level.IPV6: socket.IPPROTO_IPV6,
    Level.TCP: socket.IPPROTO_TCP,
    Level.UDP: socket.IPPROTO_UDP,  # == SOL_UDP (17) on Linux
}

#: Linux's numbers for the options CPython's socket module may lack, checked against
#: /usr/include/asm-generic/socket.h, linux/in.h, linux/in6.h, linux/tcp.h and linux/udp.h.
LINUX_OPTION_NUMBERS: Final[Mapping[str, int]] = {
    "SO_REUSEADDR": 2,
    "SO_REUSEPORT": 15,
    "SO_SNDBUF": 7,
    "SO_RCVBUF": 8,
    "SO_SNDBUFFORCE": 32,
    "SO_RCVBUFFORCE": 33,
    "SO_RXQ_OVFL": 40,
    "SO_BUSY_POLL": 46,
    "SO_PREFER_BUSY_POLL": 69,
    "SO_BUSY_POLL_BUDGET": 70,
    "SO_ZEROCOPY": 60,
    "IP_TOS": 1,
    "IP_TTL": 2,
    "IPV6_UNICAST_HOPS": 16,
    "IPV6_V6ONLY": 26,
    "IPV6_TCLASS": 67,
    "TCP_NODELAY": 1,
    "TCP_QUICKACK": 12,
    "UDP_SEGMENT": 103,
    "UDP_GRO": 104,
}

#: SO_MEMINFO (asm-generic/socket.h) answers an array of u32 counters; SK_MEMINFO_DROPS
#: (linux/sock_diag.h) indexes the socket's drop count in it. Not options one sets: read only.
_SO_MEMINFO: Final = 55
_SK_MEMINFO_DROPS: Final = 8


def read_kernel_drops(sock: socket.socket) -> int | None:
    """The kernel's count of datagrams dropped on ``sock``'s receive queue, as of now.

    SO_RXQ_OVFL reports the count only on the next datagram received, so drops after the last
    one would go unseen; SO_MEMINFO reads it whenever asked. None where the platform or kernel
    cannot say (not Linux, or a kernel before 3.9).

    Example:
        >>> import socket
        >>> with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ...     read_kernel_drops(sock) in (0, None)
        True
    """
    if not sys.platform.startswith("linux"):
        return None
    size = 4 * (_SK_MEMINFO_DROPS + 1)
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, 4 * 16)
    except OSError:
        return None
    if len(raw) < size:
        return None
    return int.from_bytes(raw[size - 4 : size], sys.byteorder)

#: getsockopt cannot read the *FORCE variants (Linux answers ENOPROTOOPT): read the plain option.
READBACK_NAMES: Final[Mapping[str, str]] = {
    "SO_RCVBUFFORCE": "SO_RCVBUF",
    "SO_SNDBUFFORCE": "SO_SNDBUF",
}

_ALL_NAMES: Final[tuple[str, ...]] = (*LINUX_OPTION_NUMBERS, "SO_EXCLUSIVEADDRUSE")


def current_platform() -> Platform:
    """This interpreter's platform, as the core's option planner names it.

    Example:
        >>> current_platform() in set(Platform)
        True
    """
    return Platform.from_sys_platform(sys.platform)


def _number_table(platform: Platform) -> dict[str, int]:
    table: dict[str, int] = {}
    for name in _ALL_NAMES:
        value = getattr(socket, name, None)
        if isinstance(value, int):
            table[name] = value
        elif platform is Platform.LINUX and name in LINUX_OPTION_NUMBERS:
            table[name] = LINUX_OPTION_NUMBERS[name]
    return table


#: This platform's option numbers by name; a name missing here does not exist on this platform.
OPTION_NUMBERS: Final[Mapping[str, int]] = _number_table(current_platform())


def option_number(level: Level, name: str) -> tuple[int, int] | None:
    """``(level, optname)`` numbers for ``setsockopt``, or None where the platform lacks it.

    Example:
        >>> option_number(Level.SOCKET, "SO_REUSEADDR") == (socket.SOL_SOCKET, socket.SO_REUSEADDR)
        True
    """
    number = OPTION_NUMBERS.get(name)
    if number is None:
        return None
    return LEVEL_NUMBERS[level], number


def _set(sock: OptionSocket, level: Level, name: str, value: int) -> int | None:
    """setsockopt; the errno if refused, None if it succeeded."""
    numbers = option_number(level, name)
    if numbers is None:
        return errno.ENOPROTOOPT
    try:
        sock.setsockopt(numbers[0], numbers[1], value)
    except OSError as exc:
        return exc.errno if exc.errno is not None else errno.EINVAL
    return None


def _read(sock: OptionSocket, level: Level, name: str) -> int | None:
    numbers = option_number(level, READBACK_NAMES.get(name, name))
    if numbers is None:
        return None
    try:
        return sock.getsockopt(numbers[0], numbers[1])
    except OSError:
        # The setting itself succeeded; an option that cannot be read back is reported as
        # "set (not read back)" by the core rather than as a failure.
        return None


def read_back(sock: OptionSocket, setting: OptionSetting) -> int | None:
    """What ``setting``'s option reads back as now (None if it cannot be read here).

    Example:
        >>> from horizon_core.options import Necessity, Phase
        >>> s = OptionSetting("reuse_addr", Level.SOCKET, "SO_REUSEADDR", 1, Phase.BEFORE_BIND,
        ...                   Necessity.REQUIRED)
        >>> with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ...     read_back(sock, s)
        0
    """
    return _read(sock, setting.level, setting.name)


def apply_setting(sock: OptionSocket, setting: OptionSetting) -> Observation:
    """Apply one setting (and its fallback if it is refused); return what the kernel did.

    Example:
        >>> from horizon_core.options import Necessity, Phase
        >>> s = OptionSetting("reuse_addr", Level.SOCKET, "SO_REUSEADDR", 1, Phase.BEFORE_BIND,
        ...                   Necessity.REQUIRED)
        >>> with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ...     apply_setting(sock, s).effective
        1
    """
    target = setting
    error = _set(sock, setting.level, setting.name, setting.value)
    used_fallback = False
    if error is not None and setting.fallback is not None:
        target = setting.fallback
        used_fallback = True
        error = _set(sock, target.level, target.name, target.value)
    effective = None
    if error is None and target.readback:
        effective = _read(sock, target.level, target.name)
    return Observation(setting.name, error=error, effective=effective, used_fallback=used_fallback)


def apply_settings(sock: OptionSocket, settings: Iterable[OptionSetting]) -> dict[str, Observation]:
    """Apply settings in order; return one Observation per setting, keyed by its name.

    This is the ``observed`` mapping :func:`horizon_core.options.build_report` takes.

    Example:
        >>> from horizon_core.config import NetConfig
        >>> from horizon_core.options import Family, SocketKind, plan_options
        >>> plan = plan_options(NetConfig(), Family.IPV6, SocketKind.TCP_LISTENER,
        ...                     current_platform())
        >>> with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        ...     observed = apply_settings(sock, plan.settings)
        >>> observed["TCP_NODELAY"].error is None
        True
    """
    return {setting.name: apply_setting(sock, setting) for setting in settings}


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


@functools.cache
def read_kernel_limits(proc_root: Path = Path("/proc/sys/net/core")) -> KernelLimits:
    """``net.core.rmem_max`` and ``wmem_max`` (None where unreadable, e.g. off Linux).

    Read once per process and ``proc_root``, then cached: every socket open builds a report from
    these limits, and reading /proc on each one would be blocking file I/O inside async code
    (anyio's own test suite flags that with blockbuster). An administrator who raises the limits
    while a process runs, or a test that changes them, calls ``read_kernel_limits.cache_clear()``.

    Example:
        >>> limits = read_kernel_limits()
        >>> limits.rmem_max is None or limits.rmem_max > 0
        True
        >>> read_kernel_limits() is limits
        True
    """
    return KernelLimits(
        rmem_max=_read_int(proc_root / "rmem_max"),
        wmem_max=_read_int(proc_root / "wmem_max"),
    )
