"""Socket options: the plan a driver applies, and the report of what the kernel made of it.

Rules this module obeys:

* Pure and platform-neutral. Options are *names* (``"SO_RCVBUF"``) at symbolic levels; the numbers
  belong to the drivers (``horizon_drivers`` owns the tables). Kernel answers (errnos, values read
  back with getsockopt, ``net.core.rmem_max``) come in as arguments.
* The planning rules are data: ``_RULES`` has one row per (field, option) with the platforms,
  socket kinds and address families it applies to. :func:`plan_options` only walks the table.
* Nothing is silent. A field *asks* for something when its value is not None and, for a bool,
  when it differs from what the kernel does without being told (``_KERNEL_DEFAULTS``: Nagle on,
  delayed ACKs, no address/port reuse, no busy polling, no GRO, no drop counter). Every asking
  field ends up in ``OptionPlan.settings`` or ``OptionPlan.skipped``. A bool option is planned
  as 0 or 1 wherever the socket has it, so the socket's state never depends on inherited sysctls;
  where the socket lacks it, a bool at the kernel default asked for nothing and is not listed.
* Some options need more than the kernel: the driver must use them (SO_ZEROCOPY is pointless
  unless sends carry MSG_ZEROCOPY and someone reads the completions). Such a rule names a
  :class:`Feature`, and a driver passes the features it implements to :func:`plan_options`;
  where the driver lacks it, the field is SKIPPED with that reason, never silently dropped.
* Necessity: a setting is REQUIRED exactly when ``NetConfig.is_required(field)``, except three
  rules made best-effort by the platform: Linux's ``SO_RCVBUFFORCE``/``SO_SNDBUFFORCE`` (they
  need CAP_NET_ADMIN; the plain option is the ``fallback`` and carries the field's necessity),
  ``IP_TOS``/``IPV6_TCLASS`` on Windows (accepted but ignored unless policy allows it), and
  ``IP_TTL`` on IPv6 sockets (reaches only IPv4-mapped traffic).
* Only a REFUSED outcome (the kernel said no: EPERM, EACCES, ENOBUFS, ...) of a REQUIRED setting
  raises (:meth:`OptionReport.raise_for_required`). SKIPPED (not on this platform, socket kind or
  family) and UNSUPPORTED (this kernel predates the option) are reported, never raised: a config
  that asks for UDP GRO stays usable where GRO does not exist, and the report says so.
* A report is built from exactly one observation per planned setting. A missing or unexpected
  observation is a driver bug and raises ValueError rather than being guessed at.

Example:
    >>> from horizon_core.config import NetConfig
    >>> from horizon_core.options import Family, Platform, SocketKind, plan_options
    >>> plan = plan_options(NetConfig(), Family.IPV4, SocketKind.UDP, Platform.LINUX)
    >>> [(s.name, s.value) for s in plan.settings][:3]
    [('SO_REUSEADDR', 1), ('SO_REUSEPORT', 1), ('SO_RCVBUFFORCE', 1048576)]
    >>> plan.settings[2].fallback.name, plan.settings[2].necessity.value
    ('SO_RCVBUF', 'best_effort')
    >>> [(s.field, s.reason) for s in plan.skipped]
    [('tcp_nodelay', 'not for UDP sockets'), ('tcp_quickack', 'not for UDP sockets')]
"""

from __future__ import annotations

import enum
import errno as _errno
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Final

import attrs

from horizon_core.errors import OptionError

if TYPE_CHECKING:
    from horizon_core.config import NetConfig

__all__ = [
    "OPTION_FIELDS",
    "OPTION_NAMES",
    "Family",
    "Feature",
    "KernelLimits",
    "Level",
    "Necessity",
    "Observation",
    "OptionOutcome",
    "OptionPlan",
    "OptionReport",
    "OptionSetting",
    "OptionStatus",
    "Phase",
    "Platform",
    "SkippedOption",
    "SocketKind",
    "build_report",
    "plan_options",
]


# -- vocabulary ----------------------------------------------------------------------------


class Platform(enum.StrEnum):
    """The operating systems whose option sets the planner knows.

    Example:
        >>> Platform.from_sys_platform("freebsd14"), Platform.from_sys_platform("win32")
        (<Platform.FREEBSD: 'freebsd'>, <Platform.WINDOWS: 'windows'>)
    """

    LINUX = "linux"
    WINDOWS = "windows"
    DARWIN = "darwin"
    FREEBSD = "freebsd"

    @classmethod
    def from_sys_platform(cls, value: str) -> Platform:
        """Map a ``sys.platform`` string (passed in: the core never reads it) to a Platform.

        ``"linux"``, ``"win32"``, ``"darwin"`` and ``"freebsd<N>"`` are known; anything else
        raises ValueError naming the value.

        Example:
            >>> Platform.from_sys_platform("linux")
            <Platform.LINUX: 'linux'>
        """
        if value.startswith("linux"):  # "linux2" on Pythons before 3.3
            return cls.LINUX
        if value == "win32":
            return cls.WINDOWS
        if value == "darwin":
            return cls.DARWIN
        if value.startswith("freebsd"):
            return cls.FREEBSD
        raise ValueError(
            f"unsupported sys.platform {value!r}: expected 'linux', 'win32', 'darwin' or 'freebsdN'"
        )


class Family(enum.IntEnum):
    """The address family of a socket: 4 (AF_INET) or 6 (AF_INET6).

    Example:
        >>> Family(6).name
        'IPV6'
    """

    IPV4 = 4
    IPV6 = 6


class SocketKind(enum.StrEnum):
    """What the socket is for. Accepted TCP streams use the TCP_STREAM plan.

    Example:
        >>> SocketKind("tcp_listener")
        <SocketKind.TCP_LISTENER: 'tcp_listener'>
    """

    UDP = "udp"
    TCP_LISTENER = "tcp_listener"
    TCP_STREAM = "tcp_stream"


class Level(enum.StrEnum):
    """The protocol level of an option (SOL_SOCKET, IPPROTO_IP, ...); drivers map it to a number.

    Example:
        >>> [level.value for level in Level]
        ['socket', 'ip', 'ipv6', 'tcp', 'udp']
    """

    SOCKET = enum.auto()
    IP = enum.auto()
    IPV6 = enum.auto()
    TCP = enum.auto()
    UDP = enum.auto()


class Phase(enum.StrEnum):
    """When a driver applies a setting.

    BEFORE_BIND is before ``bind()`` (UDP, listeners) or before ``connect()`` (TCP streams).
    AFTER_BIND is after ``bind()``/``connect()``. A driver applying the TCP_STREAM plan to an
    *accepted* stream applies every setting, in plan order, right after ``accept()``.

    Example:
        >>> sorted(Phase)
        [<Phase.AFTER_BIND: 'after_bind'>, <Phase.BEFORE_BIND: 'before_bind'>]
    """

    BEFORE_BIND = enum.auto()
    AFTER_BIND = enum.auto()


class Necessity(enum.StrEnum):
    """Whether a refusal of a setting raises (REQUIRED) or is only reported (BEST_EFFORT).

    Example:
        >>> Necessity.BEST_EFFORT.value
        'best_effort'
    """

    REQUIRED = enum.auto()
    BEST_EFFORT = enum.auto()


class Feature(enum.StrEnum):
    """What a driver must implement for an option to mean anything; drivers declare theirs.

    ZEROCOPY: sends of ``NetConfig.zerocopy_threshold`` bytes or more carry MSG_ZEROCOPY, their
    buffers are held until the kernel's completion, and completions are read from the error
    queue (the native Linux driver).

    Example:
        >>> Feature("zerocopy")
        <Feature.ZEROCOPY: 'zerocopy'>
    """

    ZEROCOPY = enum.auto()


#: Every option name a plan can contain (primaries and fallbacks).
OPTION_NAMES: Final[tuple[str, ...]] = (
    "SO_REUSEADDR",
    "SO_EXCLUSIVEADDRUSE",
    "SO_REUSEPORT",
    "SO_RCVBUF",
    "SO_RCVBUFFORCE",
    "SO_SNDBUF",
    "SO_SNDBUFFORCE",
    "SO_BUSY_POLL",
    "SO_BUSY_POLL_BUDGET",
    "SO_PREFER_BUSY_POLL",
    "SO_RXQ_OVFL",
    "SO_ZEROCOPY",
    "IP_TOS",
    "IP_TTL",
    "IPV6_TCLASS",
    "IPV6_UNICAST_HOPS",
    "IPV6_V6ONLY",
    "TCP_NODELAY",
    "TCP_QUICKACK",
    "UDP_SEGMENT",
    "UDP_GRO",
)


# -- the plan ------------------------------------------------------------------------------


@attrs.frozen
class OptionSetting:
    """One ``setsockopt`` a driver makes: level, name, value, when, and whether it may fail.

    ``fallback`` is tried when this setting is refused (SO_RCVBUFFORCE -> SO_RCVBUF); it carries
    the field's own necessity. ``readback`` says whether getsockopt returns something worth
    comparing with ``value``.

    Example:
        >>> s = OptionSetting("tcp_nodelay", Level.TCP, "TCP_NODELAY", 1, Phase.BEFORE_BIND,
        ...                   Necessity.BEST_EFFORT)
        >>> s.name, s.value, s.readback, s.fallback
        ('TCP_NODELAY', 1, True, None)
    """

    field: str
    level: Level
    name: str
    value: int
    phase: Phase
    necessity: Necessity
    fallback: OptionSetting | None = None
    readback: bool = True


@attrs.frozen
class SkippedOption:
    """A field that asked for something this socket cannot have, and why.

    ``value`` is what would have been set and ``necessity`` the field's necessity when the
    platform lacks the option (for reporting only: skips never raise); skips for the socket kind
    or family are always best-effort, since one config serves sockets of every kind.

    Example:
        >>> SkippedOption("hop_limit", "IPV6_UNICAST_HOPS", "IPv4 socket", 64).reason
        'IPv4 socket'
    """

    field: str
    name: str
    reason: str
    value: int | None = None
    necessity: Necessity = Necessity.BEST_EFFORT


def _check_plan_settings(
    instance: OptionPlan, attribute: attrs.Attribute[tuple[OptionSetting, ...]],
    settings: tuple[OptionSetting, ...],
) -> None:
    # Drivers apply settings front to back and report by name, so both properties are load-bearing.
    phases = [s.phase for s in settings]
    if Phase.BEFORE_BIND in phases[phases.count(Phase.BEFORE_BIND):]:
        raise ValueError("OptionPlan.settings must list every BEFORE_BIND setting first")
    names = [s.name for s in settings]
    names += [s.fallback.name for s in settings if s.fallback is not None]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"OptionPlan.settings names an option twice: {', '.join(duplicates)}")


@attrs.frozen
class OptionPlan:
    """The ordered settings for one socket, and the fields that could not be honoured on it.

    Example:
        >>> from horizon_core.config import NetConfig
        >>> plan = plan_options(NetConfig(), Family.IPV6, SocketKind.TCP_STREAM, Platform.LINUX)
        >>> [s.name for s in plan.after_bind()]
        ['TCP_QUICKACK']
        >>> sorted({s.reason for s in plan.skipped})
        ['not for TCP sockets', 'not for TCP streams (only bound sockets: UDP and listeners)']
    """

    family: Family
    kind: SocketKind
    platform: Platform
    settings: tuple[OptionSetting, ...] = attrs.field(validator=_check_plan_settings)
    skipped: tuple[SkippedOption, ...] = ()

    def before_bind(self) -> tuple[OptionSetting, ...]:
        """The settings to apply before ``bind()`` (or ``connect()`` for a TCP stream).

        Example:
            >>> from horizon_core.config import NetConfig
            >>> plan = plan_options(NetConfig(), Family.IPV4, SocketKind.UDP, Platform.WINDOWS)
            >>> [s.name for s in plan.before_bind()]
            ['SO_REUSEADDR', 'SO_RCVBUF', 'SO_SNDBUF']
        """
        return tuple(s for s in self.settings if s.phase is Phase.BEFORE_BIND)

    def after_bind(self) -> tuple[OptionSetting, ...]:
        """The settings to apply after ``bind()`` (or ``connect()`` for a TCP stream).

        Example:
            >>> from horizon_core.config import NetConfig
            >>> plan = plan_options(NetConfig(), Family.IPV4, SocketKind.UDP, Platform.LINUX)
            >>> plan.after_bind()
            ()
        """
        return tuple(s for s in self.settings if s.phase is Phase.AFTER_BIND)


# -- the rules, as data --------------------------------------------------------------------

_ALL_PLATFORMS: Final = frozenset(Platform)
_LINUX: Final = frozenset({Platform.LINUX})
_NOT_LINUX: Final = _ALL_PLATFORMS - _LINUX
_WINDOWS: Final = frozenset({Platform.WINDOWS})
_ALL_KINDS: Final = frozenset(SocketKind)
_BOUND: Final = frozenset({SocketKind.UDP, SocketKind.TCP_LISTENER})
_TCP: Final = frozenset({SocketKind.TCP_LISTENER, SocketKind.TCP_STREAM})
_UDP: Final = frozenset({SocketKind.UDP})
_BOTH: Final = frozenset(Family)
_V4: Final = frozenset({Family.IPV4})
_V6: Final = frozenset({Family.IPV6})


def _as_int(value: object) -> int | None:
    """Bools become 0/1, ints pass through, None means the field asked for nothing."""
    if value is None:
        return None
    if isinstance(value, int):  # bool is an int: True -> 1
        return int(value)
    raise TypeError(f"a socket option value must be an int or bool, not {type(value).__name__}")


def _one_if_false(value: object) -> int | None:
    # Windows: without SO_EXCLUSIVEADDRUSE another socket that sets SO_REUSEADDR can bind the
    # same port and steal its traffic, so reuse_addr=False means "exclusive", not just "off".
    return 1 if value is False else None


def _flag_if_set(value: object) -> int | None:
    # A threshold turns the socket flag on; None asks for nothing.
    return None if value is None else 1


def _dual_stack(config: NetConfig) -> str | None:
    if config.ipv6_only is True:
        return "IPv6-only socket (ttl reaches only IPv4-mapped traffic; use hop_limit)"
    return None


@attrs.frozen
class _Rule:
    """One row: ``field`` sets ``name`` at ``level`` on these platforms, kinds and families."""

    field: str
    name: str
    level: Level
    phase: Phase
    platforms: frozenset[Platform]
    kinds: frozenset[SocketKind]
    families: frozenset[Family]
    encode: Callable[[object], int | None] = _as_int
    readback: bool = True
    # Platforms where the setting is best-effort whatever the config says.
    best_effort_on: frozenset[Platform] = frozenset()
    fallback: str | None = None
    platform_reason: str = "not on this platform"
    # Checks the rest of the config; returns a skip reason, or None when the rule applies.
    condition: Callable[[NetConfig], str | None] | None = None
    # What the driver must implement for the option to take effect (None: nothing).
    feature: Feature | None = None


_B, _A = Phase.BEFORE_BIND, Phase.AFTER_BIND
_S = Level.SOCKET

# Row order is plan order within a phase. BEFORE_BIND is the default because most options
# shape what bind/connect/listen do or what the first packet carries:
# * SO_REUSEADDR/SO_REUSEPORT/SO_EXCLUSIVEADDRUSE are checked by bind() itself (socket(7)).
# * IPV6_V6ONLY is refused with EINVAL once the socket is bound (ipv6(7)).
# * Buffer sizes must precede listen()/connect(): the TCP window scale is fixed by the SYN (tcp(7)).
# * TOS/TTL/hop limit before connect() so the SYN already carries them.
# * SO_RXQ_OVFL, UDP_GRO before bind() so the first datagram is counted/coalesced.
_RULES: Final[tuple[_Rule, ...]] = (
    _Rule("reuse_addr", "SO_REUSEADDR", _S, _B, _ALL_PLATFORMS, _BOUND, _BOTH),
    _Rule("reuse_addr", "SO_EXCLUSIVEADDRUSE", _S, _B, _WINDOWS, _BOUND, _BOTH,
          encode=_one_if_false),
    # Linux and the BSDs have SO_REUSEPORT (Linux load-balances between the sockets).
    _Rule("reuse_port", "SO_REUSEPORT", _S, _B, _ALL_PLATFORMS - _WINDOWS, _BOUND, _BOTH,
          platform_reason="not on this platform (SO_REUSEPORT does not exist on Windows)"),
    _Rule("ipv6_only", "IPV6_V6ONLY", Level.IPV6, _B, _ALL_PLATFORMS, _ALL_KINDS, _V6),
    # socket(7): SO_RCVBUFFORCE lets CAP_NET_ADMIN exceed net.core.rmem_max; without the
    # capability it is EPERM, and SO_RCVBUF (clamped to rmem_max) is the fallback.
    _Rule("recv_buf", "SO_RCVBUFFORCE", _S, _B, _LINUX, _ALL_KINDS, _BOTH,
          best_effort_on=_LINUX, fallback="SO_RCVBUF"),
    _Rule("recv_buf", "SO_RCVBUF", _S, _B, _NOT_LINUX, _ALL_KINDS, _BOTH),
    _Rule("send_buf", "SO_SNDBUFFORCE", _S, _B, _LINUX, _ALL_KINDS, _BOTH,
          best_effort_on=_LINUX, fallback="SO_SNDBUF"),
    _Rule("send_buf", "SO_SNDBUF", _S, _B, _NOT_LINUX, _ALL_KINDS, _BOTH),
    # Windows accepts IP_TOS but ignores it unless DisableUserTOSSetting allows it; QoS2 is the
    # supported way, so the option can only be best-effort there.
    _Rule("tos", "IP_TOS", Level.IP, _B, _ALL_PLATFORMS, _ALL_KINDS, _V4, best_effort_on=_WINDOWS),
    _Rule("tos", "IPV6_TCLASS", Level.IPV6, _B, _ALL_PLATFORMS, _ALL_KINDS, _V6,
          best_effort_on=_WINDOWS),
    _Rule("ttl", "IP_TTL", Level.IP, _B, _ALL_PLATFORMS, _ALL_KINDS, _V4),
    # On a dual-stack Linux socket IP_TTL sets the TTL of IPv4-mapped traffic; native IPv6 uses
    # hop_limit. It can do no harm, and may do nothing, so it is best-effort.
    _Rule("ttl", "IP_TTL", Level.IP, _B, _LINUX, _ALL_KINDS, _V6, best_effort_on=_ALL_PLATFORMS,
          platform_reason="not on this platform (IP_TTL on IPv6 sockets is Linux-only)",
          condition=_dual_stack),
    _Rule("hop_limit", "IPV6_UNICAST_HOPS", Level.IPV6, _B, _ALL_PLATFORMS, _ALL_KINDS, _V6),
    # Set on listeners too: harmless, and Linux copies it to accepted children. Drivers still
    # apply the TCP_STREAM plan to every accepted stream (the reference library did not).
    _Rule("tcp_nodelay", "TCP_NODELAY", Level.TCP, _B, _ALL_PLATFORMS, _TCP, _BOTH),
    # socket(7): raising SO_BUSY_POLL, SO_BUSY_POLL_BUDGET above the current value, or setting
    # SO_PREFER_BUSY_POLL=1 needs CAP_NET_ADMIN; the report turns EPERM into that reason.
    _Rule("busy_poll", "SO_BUSY_POLL", _S, _B, _LINUX, _ALL_KINDS, _BOTH),
    _Rule("busy_poll_budget", "SO_BUSY_POLL_BUDGET", _S, _B, _LINUX, _ALL_KINDS, _BOTH),
    _Rule("prefer_busy_poll", "SO_PREFER_BUSY_POLL", _S, _B, _LINUX, _ALL_KINDS, _BOTH),
    # SO_RXQ_OVFL reports datagrams dropped by a full receive queue; TCP never drops queued data.
    _Rule("rx_drop_counter", "SO_RXQ_OVFL", _S, _B, _LINUX, _UDP, _BOTH),
    _Rule("udp_gso_segment", "UDP_SEGMENT", Level.UDP, _B, _LINUX, _UDP, _BOTH),
    _Rule("udp_gro", "UDP_GRO", Level.UDP, _B, _LINUX, _UDP, _BOTH),
    # SO_ZEROCOPY only permits MSG_ZEROCOPY sends (Linux 4.14 TCP, 5.0 UDP); the driver makes
    # them and reads their completions. Accepted streams get the TCP_STREAM plan, so listeners,
    # which send nothing, do not need it.
    _Rule("zerocopy_threshold", "SO_ZEROCOPY", _S, _B, _LINUX,
          frozenset({SocketKind.UDP, SocketKind.TCP_STREAM}), _BOTH, encode=_flag_if_set,
          feature=Feature.ZEROCOPY,
          platform_reason="not on this platform (MSG_ZEROCOPY is Linux-only)"),
    # tcp(7): TCP_QUICKACK "is not permanent": the stack re-enters delayed-ACK mode on its own,
    # so it is applied once connected (or accepted) and cannot be read back meaningfully.
    _Rule("tcp_quickack", "TCP_QUICKACK", Level.TCP, _A, _LINUX, _TCP, _BOTH, readback=False),
)

#: The NetConfig fields that map to socket options. The others (tcp_backlog, poll_timeout,
#: spin_budget, udp_gso_batch, best_effort) are runtime settings: they never appear in a plan.
OPTION_FIELDS: Final[tuple[str, ...]] = tuple(dict.fromkeys(rule.field for rule in _RULES))

# What each bool field's socket gets when nobody sets the option. A bool equal to this asked for
# nothing, so it is not listed as skipped where the option does not exist. ipv6_only is absent:
# the kernel default differs (Linux bindv6only=0, Windows V6ONLY=1), so any bool asks.
_KERNEL_DEFAULTS: Final[Mapping[str, bool]] = {
    "reuse_addr": False,
    "reuse_port": False,
    "tcp_nodelay": False,  # Nagle's algorithm is on
    "tcp_quickack": False,  # delayed ACKs
    "prefer_busy_poll": False,
    "rx_drop_counter": False,
    "udp_gro": False,
}

_KIND_NAMES: Final[Mapping[SocketKind, str]] = {
    SocketKind.UDP: "UDP sockets",
    SocketKind.TCP_LISTENER: "TCP listeners",
    SocketKind.TCP_STREAM: "TCP streams",
}


def _kind_reason(kind: SocketKind, rule: _Rule) -> str:
    if kind is SocketKind.UDP:
        return "not for UDP sockets"
    if not rule.kinds & _TCP:
        return "not for TCP sockets"
    if rule.kinds == _BOUND:
        return "not for TCP streams (only bound sockets: UDP and listeners)"
    return f"not for {_KIND_NAMES[kind]}"


def _mismatch(
    rule: _Rule, config: NetConfig, family: Family, kind: SocketKind, platform: Platform,
    features: frozenset[Feature],
) -> tuple[int, str] | None:
    """None if ``rule`` applies; else (how far it got, why not). Later checks are more specific."""
    if kind not in rule.kinds:
        return 0, _kind_reason(kind, rule)
    if family not in rule.families:
        return 1, "IPv4 socket" if family is Family.IPV4 else "IPv6 socket"
    if platform not in rule.platforms:
        return 2, rule.platform_reason
    if rule.feature is not None and rule.feature not in features:
        return 3, f"not supported by this driver (it does not implement {rule.feature.value})"
    if rule.condition is not None:
        reason = rule.condition(config)
        if reason is not None:
            return 4, reason
    return None


_PLATFORM_CHECK: Final = 2


def _asks(field: str, value: object) -> bool:
    if value is None:
        return False
    default = _KERNEL_DEFAULTS.get(field)
    return not (isinstance(value, bool) and value == default)


def plan_options(
    config: NetConfig,
    family: Family,
    kind: SocketKind,
    platform: Platform,
    *,
    features: frozenset[Feature] = frozenset(),
) -> OptionPlan:
    """Decide every ``setsockopt`` for one socket: a pure function of its arguments.

    ``features`` are what the driver that will own the socket implements; an option that needs
    another is skipped with the reason (``zerocopy_threshold`` needs :attr:`Feature.ZEROCOPY`).

    Settings come in table order, BEFORE_BIND first. Each field that asked for something is
    either in ``settings`` or in ``skipped`` with the reason; bool fields are planned as 0/1
    wherever the socket has the option.

    Example:
        >>> import attrs
        >>> from horizon_core.config import NetConfig
        >>> config = attrs.evolve(NetConfig(), reuse_addr=False, busy_poll=50)
        >>> plan = plan_options(config, Family.IPV4, SocketKind.UDP, Platform.WINDOWS)
        >>> [(s.name, s.value, s.necessity.value) for s in plan.settings][:2]
        [('SO_REUSEADDR', 0, 'required'), ('SO_EXCLUSIVEADDRUSE', 1, 'required')]
        >>> for skip in plan.skipped:
        ...     print(f"{skip.field}: {skip.reason}")
        reuse_port: not on this platform (SO_REUSEPORT does not exist on Windows)
        tcp_nodelay: not for UDP sockets
        busy_poll: not on this platform
        rx_drop_counter: not on this platform
        tcp_quickack: not for UDP sockets
    """
    planned: list[tuple[int, OptionSetting]] = []
    skipped: list[SkippedOption] = []
    for field in OPTION_FIELDS:
        value: object = getattr(config, field)
        necessity = Necessity.REQUIRED if config.is_required(field) else Necessity.BEST_EFFORT
        misses: list[tuple[int, str, _Rule, int]] = []
        applied = False
        for index, rule in enumerate(_RULES):
            if rule.field != field:
                continue
            encoded = rule.encode(value)
            if encoded is None:
                continue  # this row does not serve this value (None, or reuse_addr=True)
            miss = _mismatch(rule, config, family, kind, platform, features)
            if miss is not None:
                misses.append((miss[0], miss[1], rule, encoded))
                continue
            applied = True
            planned.append((index, _setting(rule, encoded, platform, necessity)))
        if applied or not misses or not _asks(field, value):
            continue
        # Report the rule that came closest to applying (first in table order among equals).
        rank, reason, rule, encoded = max(misses, key=lambda miss: miss[0])
        forced = platform in rule.best_effort_on
        by_platform = rank == _PLATFORM_CHECK and not forced
        skip_necessity = necessity if by_platform else Necessity.BEST_EFFORT
        skipped.append(SkippedOption(field, rule.name, reason, encoded, skip_necessity))
    phase_rank = {Phase.BEFORE_BIND: 0, Phase.AFTER_BIND: 1}
    planned.sort(key=lambda item: (phase_rank[item[1].phase], item[0]))
    return OptionPlan(
        family=family,
        kind=kind,
        platform=platform,
        settings=tuple(setting for _, setting in planned),
        skipped=tuple(skipped),
    )


def _setting(rule: _Rule, value: int, platform: Platform, necessity: Necessity) -> OptionSetting:
    fallback = None
    if rule.fallback is not None:
        fallback = OptionSetting(
            rule.field, rule.level, rule.fallback, value, rule.phase, necessity
        )
    if platform in rule.best_effort_on:
        necessity = Necessity.BEST_EFFORT
    return OptionSetting(
        rule.field, rule.level, rule.name, value, rule.phase, necessity, fallback, rule.readback
    )


# -- the report ----------------------------------------------------------------------------


class OptionStatus(enum.StrEnum):
    """What became of one planned or skipped setting.

    APPLIED: set, and reads back as asked (or cannot be read back). ADJUSTED: set, but the kernel
    changed the value (doubling, clamping). REFUSED: setsockopt failed (EPERM, EACCES, ENOBUFS,
    ...). UNSUPPORTED: this kernel does not know the option (ENOPROTOOPT, EINVAL, EOPNOTSUPP).
    SKIPPED: never attempted; not on this platform, socket kind or family.

    Example:
        >>> OptionStatus.ADJUSTED.value
        'adjusted'
    """

    APPLIED = enum.auto()
    ADJUSTED = enum.auto()
    REFUSED = enum.auto()
    UNSUPPORTED = enum.auto()
    SKIPPED = enum.auto()


@attrs.frozen
class Observation:
    """What a driver saw when it applied one setting; keyed in ``observed`` by the setting's name.

    ``error`` is the errno of setsockopt (None on success) and ``effective`` the getsockopt value
    (None if not read). ``used_fallback`` means the setting was refused and its fallback was tried;
    ``error`` and ``effective`` then describe the fallback. A driver must try the fallback.

    Example:
        >>> import errno
        >>> Observation("SO_RCVBUFFORCE", effective=425984, used_fallback=True).used_fallback
        True
        >>> Observation("SO_BUSY_POLL", error=errno.EPERM).effective is None
        True
    """

    name: str
    error: int | None = None
    effective: int | None = None
    used_fallback: bool = False


@attrs.frozen
class KernelLimits:
    """Limits the driver read (``/proc/sys/net/core/rmem_max`` and ``wmem_max``); None if unknown.

    Example:
        >>> KernelLimits(rmem_max=212992).wmem_max is None
        True
    """

    rmem_max: int | None = None
    wmem_max: int | None = None


@attrs.frozen
class OptionOutcome:
    """The verdict on one setting: requested and effective values, status, reason, necessity.

    ``name`` is the option in effect (the fallback's when it was used). ``error`` is the errno
    behind a REFUSED or UNSUPPORTED status, None otherwise.

    Example:
        >>> o = OptionOutcome("recv_buf", "SO_RCVBUF", 1048576, 2097152, OptionStatus.ADJUSTED,
        ...                   "doubled by the kernel (socket(7): bookkeeping overhead)",
        ...                   Necessity.REQUIRED)
        >>> o.effective // o.requested
        2
    """

    field: str
    name: str
    requested: int | None
    effective: int | None
    status: OptionStatus
    reason: str
    necessity: Necessity
    error: int | None = None

    def to_dict(self) -> dict[str, object]:
        """This outcome as JSON-friendly values (enums as their string values).

        Example:
            >>> OptionOutcome("tos", "IP_TOS", 16, None, OptionStatus.SKIPPED, "IPv6 socket",
            ...               Necessity.BEST_EFFORT).to_dict()["status"]
            'skipped'
        """
        return {
            "field": self.field,
            "name": self.name,
            "requested": self.requested,
            "effective": self.effective,
            "status": self.status.value,
            "reason": self.reason,
            "necessity": self.necessity.value,
            "error": self.error,
        }


# The kernel may answer a forced setting under the plain name and vice versa: report["SO_RCVBUF"]
# finds the buffer outcome whichever of the two took effect.
_ALIASES: Final[Mapping[str, str]] = {
    "SO_RCVBUF": "SO_RCVBUFFORCE",
    "SO_RCVBUFFORCE": "SO_RCVBUF",
    "SO_SNDBUF": "SO_SNDBUFFORCE",
    "SO_SNDBUFFORCE": "SO_SNDBUF",
}


@attrs.frozen
class OptionReport:
    """What every planned option became: one outcome per setting, then one per skipped field.

    Index it by option name (``report["SO_RCVBUF"]``) or NetConfig field (``report["recv_buf"]``:
    the field's first outcome, its primary option).

    Example:
        >>> import errno
        >>> from horizon_core.config import NetConfig
        >>> config = NetConfig(busy_poll=50)
        >>> plan = plan_options(config, Family.IPV4, SocketKind.UDP, Platform.LINUX)
        >>> observed = {s.name: Observation(s.name, effective=s.value) for s in plan.settings}
        >>> observed["SO_BUSY_POLL"] = Observation("SO_BUSY_POLL", error=errno.EPERM)
        >>> report = build_report(plan, observed, KernelLimits(rmem_max=212992))
        >>> report["busy_poll"].status, report["busy_poll"].reason
        (<OptionStatus.REFUSED: 'refused'>, 'not permitted (needs CAP_NET_ADMIN)')
        >>> [o.name for o in report.refused_required()]
        ['SO_BUSY_POLL']
    """

    outcomes: tuple[OptionOutcome, ...]

    def __getitem__(self, name_or_field: str) -> OptionOutcome:
        """The outcome for an option name, else the primary outcome of a field; KeyError if none.

        Example:
            >>> r = OptionReport((OptionOutcome("ttl", "IP_TTL", 64, 64, OptionStatus.APPLIED,
            ...                                 "as requested", Necessity.REQUIRED),))
            >>> r["ttl"] is r["IP_TTL"]
            True
        """
        for key in (name_or_field, _ALIASES.get(name_or_field)):
            for outcome in self.outcomes:
                if outcome.name == key:
                    return outcome
        for outcome in self.outcomes:
            if outcome.field == name_or_field:
                return outcome
        names = ", ".join(dict.fromkeys(o.name for o in self.outcomes)) or "none"
        fields = ", ".join(dict.fromkeys(o.field for o in self.outcomes)) or "none"
        raise KeyError(f"no outcome for {name_or_field!r}; options: {names}; fields: {fields}")

    def __contains__(self, name_or_field: object) -> bool:
        """Whether ``report[name_or_field]`` would find an outcome.

        Example:
            >>> "SO_REUSEPORT" in OptionReport(())
            False
        """
        if not isinstance(name_or_field, str):
            return False
        try:
            self[name_or_field]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[OptionOutcome]:
        """The outcomes in plan order.

        Example:
            >>> list(OptionReport(()))
            []
        """
        return iter(self.outcomes)

    def __len__(self) -> int:
        """The number of outcomes.

        Example:
            >>> len(OptionReport(()))
            0
        """
        return len(self.outcomes)

    def refused_required(self) -> tuple[OptionOutcome, ...]:
        """The REQUIRED outcomes the kernel REFUSED (SKIPPED and UNSUPPORTED are not refusals).

        Example:
            >>> OptionReport(()).refused_required()
            ()
        """
        return tuple(
            o
            for o in self.outcomes
            if o.status is OptionStatus.REFUSED and o.necessity is Necessity.REQUIRED
        )

    def raise_for_required(self) -> None:
        """Raise OptionError for the first refused REQUIRED outcome; the message names them all.

        Example:
            >>> import errno
            >>> r = OptionReport((OptionOutcome("busy_poll", "SO_BUSY_POLL", 50, None,
            ...     OptionStatus.REFUSED, "not permitted (needs CAP_NET_ADMIN)",
            ...     Necessity.REQUIRED, errno.EPERM),))
            >>> try:
            ...     r.raise_for_required()
            ... except OptionError as exc:
            ...     print(exc.option, exc.field, exc.errno == errno.EPERM)
            SO_BUSY_POLL busy_poll True
        """
        refused = self.refused_required()
        if not refused:
            return
        first = refused[0]
        detail = first.reason
        if len(refused) > 1:
            others = "; ".join(f"{o.name} (NetConfig.{o.field}): {o.reason}" for o in refused[1:])
            detail += f"; also refused: {others}"
        detail += "; list the field in NetConfig.best_effort to report this instead of raising"
        err = _errno.EPERM if first.error is None else first.error
        raise OptionError(first.field, first.name, err, detail)

    def to_dict(self) -> list[dict[str, object]]:
        """Every outcome as a JSON-friendly dict, in plan order (for ``horizon probe``).

        Example:
            >>> OptionReport(()).to_dict()
            []
        """
        return [outcome.to_dict() for outcome in self.outcomes]

    def __str__(self) -> str:
        """One aligned line per outcome: option, field, requested -> effective, status, reason.

        Example:
            >>> print(OptionReport((OptionOutcome("ttl", "IP_TTL", 64, 64, OptionStatus.APPLIED,
            ...                                   "as requested", Necessity.REQUIRED),)))
            IP_TTL  ttl  64 -> 64  APPLIED  required  as requested
        """
        rows = [
            (
                o.name,
                o.field,
                "-" if o.requested is None else str(o.requested),
                "-" if o.effective is None else str(o.effective),
                o.status.name,
                o.necessity.value.replace("_", "-"),
                o.reason,
            )
            for o in self.outcomes
        ]
        if not rows:
            return ""
        widths = [max(len(row[i]) for row in rows) for i in range(6)]
        lines = []
        for name, field, requested, effective, status, necessity, reason in rows:
            lines.append(
                f"{name:<{widths[0]}}  {field:<{widths[1]}}  {requested:>{widths[2]}} -> "
                f"{effective:<{widths[3]}}  {status:<{widths[4]}}  {necessity:<{widths[5]}}  "
                f"{reason}".rstrip()
            )
        return "\n".join(lines)


def _errnos(*names: str) -> frozenset[int]:
    # WSA* names exist in the errno module on Windows only; Python reports Winsock errors with
    # those numbers, so both spellings are recognised wherever they exist.
    return frozenset(int(getattr(_errno, name)) for name in names if hasattr(_errno, name))


_NOT_PERMITTED: Final = _errnos("EPERM", "EACCES", "WSAEACCES")
_UNSUPPORTED: Final = _errnos(
    "ENOPROTOOPT", "EINVAL", "EOPNOTSUPP", "ENOTSUP", "WSAENOPROTOOPT", "WSAEINVAL", "WSAEOPNOTSUPP"
)
_NO_BUFFERS: Final = _errnos("ENOBUFS", "WSAENOBUFS")

_RECV_BUFFERS: Final = frozenset({"SO_RCVBUF", "SO_RCVBUFFORCE"})
_SEND_BUFFERS: Final = frozenset({"SO_SNDBUF", "SO_SNDBUFFORCE"})
_TRAFFIC_CLASS: Final = frozenset({"IP_TOS", "IPV6_TCLASS"})
# Toggles. Linux reads them back as 0/1, but the BSDs and macOS return the flag's bit
# (SO_REUSEPORT reads back as 0x200, TCP_NODELAY as 4), so only truthiness is compared.
_TOGGLES: Final = frozenset({
    "SO_REUSEADDR", "SO_EXCLUSIVEADDRUSE", "SO_REUSEPORT", "SO_PREFER_BUSY_POLL", "SO_RXQ_OVFL",
    "IPV6_V6ONLY", "TCP_NODELAY", "TCP_QUICKACK", "UDP_GRO",
})
# Linux caps a buffer request at INT_MAX / 2 before doubling it (__sock_set_rcvbuf).
_INT_MAX_HALF: Final = (2**31 - 1) // 2
_ECN_MASK: Final = 0x03
_NOTES: Final[Mapping[tuple[Platform, str], str]] = {
    (Platform.WINDOWS, "IP_TOS"): "Windows may ignore IP_TOS; use QoS2",
    (Platform.WINDOWS, "IPV6_TCLASS"): "Windows may ignore IPV6_TCLASS; use QoS2",
}

_APPLIED: Final = "as requested"


def build_report(
    plan: OptionPlan,
    observed: Mapping[str, Observation],
    limits: KernelLimits,
    errno_names: Mapping[int, str] | None = None,
) -> OptionReport:
    """Compare what a driver observed with the plan, and explain every difference.

    ``observed`` holds exactly one Observation per planned setting, keyed by the setting's name
    (a fallback is reported under its primary's name, with ``used_fallback=True``). A missing or
    unknown key raises ValueError: that is a driver bug, never silently papered over.
    ``errno_names`` names errnos in reasons (default: the ``errno`` module's names).

    Example:
        >>> from horizon_core.config import MiB, NetConfig
        >>> plan = plan_options(NetConfig(), Family.IPV4, SocketKind.TCP_STREAM, Platform.LINUX)
        >>> observed = {s.name: Observation(s.name, effective=s.value) for s in plan.settings}
        >>> observed["SO_RCVBUFFORCE"] = Observation("SO_RCVBUFFORCE", effective=2 * MiB)
        >>> observed["SO_SNDBUFFORCE"] = Observation(
        ...     "SO_SNDBUFFORCE", effective=2 * 212992, used_fallback=True)
        >>> report = build_report(plan, observed, KernelLimits(212992, 212992))
        >>> report["recv_buf"].reason
        'doubled by the kernel (socket(7): bookkeeping overhead)'
        >>> report["send_buf"].name
        'SO_SNDBUF'
        >>> print(report["send_buf"].reason)
        clamped to net.core.wmem_max=212992, then doubled; SO_SNDBUFFORCE refused, used SO_SNDBUF
        >>> report["TCP_QUICKACK"].reason
        'set (not readable)'
    """
    names = _errno.errorcode if errno_names is None else errno_names
    planned = {s.name: s for s in plan.settings}
    extra = [name for name in observed if name not in planned]
    if extra:
        fallbacks = {s.fallback.name: s.name for s in plan.settings if s.fallback is not None}
        hints = [
            f"{name} (report it as {fallbacks[name]} with used_fallback=True)"
            if name in fallbacks else name
            for name in extra
        ]
        raise ValueError(f"observations for options not in the plan: {', '.join(hints)}")
    missing = [name for name in planned if name not in observed]
    if missing:
        raise ValueError(f"no observation for planned options: {', '.join(missing)}")
    outcomes = [_judge(s, observed[s.name], plan.platform, limits, names) for s in plan.settings]
    outcomes.extend(
        OptionOutcome(
            skip.field, skip.name, skip.value, None, OptionStatus.SKIPPED, skip.reason,
            skip.necessity,
        )
        for skip in plan.skipped
    )
    return OptionReport(tuple(outcomes))


def _judge(
    setting: OptionSetting,
    seen: Observation,
    platform: Platform,
    limits: KernelLimits,
    names: Mapping[int, str],
) -> OptionOutcome:
    if seen.name != setting.name:
        raise ValueError(f"observation for {seen.name} is filed under {setting.name}")
    target, suffix = setting, ""
    if seen.used_fallback:
        if setting.fallback is None:
            raise ValueError(f"{setting.name} has no fallback, yet used_fallback=True")
        target = setting.fallback
        suffix = f"; {setting.name} refused, used {target.name}"
    elif seen.error is not None and setting.fallback is not None:
        raise ValueError(
            f"{setting.name} was refused but its fallback {setting.fallback.name} was not tried"
        )

    def outcome(
        status: OptionStatus, reason: str, effective: int | None = None, error: int | None = None
    ) -> OptionOutcome:
        note = _NOTES.get((platform, target.name))
        if note and status in (OptionStatus.APPLIED, OptionStatus.ADJUSTED):
            reason = f"{reason}; {note}"
        return OptionOutcome(
            target.field, target.name, target.value, effective, status, reason + suffix,
            target.necessity, error,
        )

    if seen.error is not None:
        status, reason = _classify_error(seen.error, platform, names)
        return outcome(status, reason, error=seen.error)
    if not target.readback:
        # The value read back is not what was set (TCP_QUICKACK): do not report it as effective.
        return outcome(OptionStatus.APPLIED, "set (not readable)")
    if seen.effective is None:
        return outcome(OptionStatus.APPLIED, "set (not read back)")
    status, reason = _compare(target, seen.effective, platform, limits)
    return outcome(status, reason, seen.effective)


def _classify_error(
    error: int, platform: Platform, names: Mapping[int, str]
) -> tuple[OptionStatus, str]:
    if error in _NOT_PERMITTED:
        # On Linux every option that can be EPERM here is gated on CAP_NET_ADMIN (socket(7)).
        if platform is Platform.LINUX:
            return OptionStatus.REFUSED, "not permitted (needs CAP_NET_ADMIN)"
        return OptionStatus.REFUSED, "not permitted"
    if error in _UNSUPPORTED:
        return OptionStatus.UNSUPPORTED, "not supported by this kernel"
    label = names.get(error, f"errno {error}")
    if error in _NO_BUFFERS:
        # macOS and the BSDs refuse a buffer above kern.ipc.maxsockbuf with ENOBUFS.
        return OptionStatus.REFUSED, f"exceeds the system's socket buffer limit ({label})"
    return OptionStatus.REFUSED, f"setsockopt failed ({label})"


def _compare(
    target: OptionSetting, effective: int, platform: Platform, limits: KernelLimits
) -> tuple[OptionStatus, str]:
    requested = target.value
    if target.name in _TOGGLES:
        if bool(effective) == bool(requested):
            return OptionStatus.APPLIED, _APPLIED
        return OptionStatus.ADJUSTED, f"reads back as {effective}"
    if effective == requested:
        return OptionStatus.APPLIED, _APPLIED
    if platform is Platform.LINUX and target.name in _RECV_BUFFERS | _SEND_BUFFERS:
        return OptionStatus.ADJUSTED, _buffer_reason(target.name, requested, effective, limits)
    if target.name in _TRAFFIC_CLASS and effective & ~_ECN_MASK == requested & ~_ECN_MASK:
        # ip(7)/ipv6(7): on TCP sockets Linux keeps its own ECN bits (the low two) in the TOS /
        # traffic class, whatever was asked.
        return OptionStatus.ADJUSTED, "ECN bits are managed by the kernel"
    return OptionStatus.ADJUSTED, f"the kernel set {effective}"


def _buffer_reason(name: str, requested: int, effective: int, limits: KernelLimits) -> str:
    # socket(7): "The kernel doubles this value (to allow space for bookkeeping overhead) when it
    # is set using setsockopt(2), and this doubled value is returned by getsockopt(2)." SO_RCVBUF
    # is first clamped to net.core.rmem_max (SO_RCVBUFFORCE is not); small values are raised to
    # the minimum (256 doubled for SO_RCVBUF, 2048 for SO_SNDBUF).
    sysctl, limit = (
        ("rmem_max", limits.rmem_max) if name in _RECV_BUFFERS else ("wmem_max", limits.wmem_max)
    )
    if effective == 2 * requested:
        return "doubled by the kernel (socket(7): bookkeeping overhead)"
    if limit is not None and limit < requested and effective == 2 * min(limit, _INT_MAX_HALF):
        return f"clamped to net.core.{sysctl}={limit}, then doubled"
    if requested > _INT_MAX_HALF and effective == 2 * _INT_MAX_HALF:
        return f"capped at INT_MAX/2={_INT_MAX_HALF}, then doubled"
    if effective > 2 * requested:
        return "raised to the kernel's minimum buffer size (socket(7))"
    return f"the kernel set {effective}"
