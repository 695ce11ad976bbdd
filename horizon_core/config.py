"""NetConfig: every socket and runtime knob, validated before a socket exists.

Rules this module obeys:

* A ``NetConfig`` that exists is valid. Validation runs in ``__attrs_post_init__``, so the
  constructor, the presets and ``attrs.evolve`` all check every field.
* Types are exact: a bool field refuses ``1``, an int field refuses ``True`` and ``1.5``.
* Every bad field is reported at once, in one :class:`~horizon_core.errors.ConfigError`.
* Each field's rule (type, range, unit) is data attached to the field; validation, text parsing,
  error messages and the public hypothesis strategies all read that one rule.

Sizes are bytes, busy-poll and spin budgets are microseconds, the poll timeout is seconds.
``KiB``, ``MiB`` and ``GiB`` are the binary size constants (1024, 1024**2, 1024**3).

Example:
    >>> from horizon_core.config import MiB, NetConfig
    >>> config = NetConfig.from_mapping({"recv-buf": "4MiB", "busy_poll": "50us"})
    >>> config.recv_buf == 4 * MiB, config.busy_poll
    (True, 50)
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from fractions import Fraction
from typing import Any, Final, Literal, cast

import attrs

from horizon_core.errors import ConfigError, FieldProblem
from horizon_core.events import MAX_POLL_TIMEOUT

__all__ = ["GiB", "KiB", "MiB", "NetConfig", "dual_stack_config", "resolve_config"]

KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB

_Kind = Literal["flag", "count", "bytes", "micros", "seconds", "names"]

# Key of the rule inside each attrs field's metadata.
_RULE: Final = "horizon_core.config.rule"


@attrs.frozen
class _Rule:
    """What one NetConfig field accepts; the single source for checks, parsing and messages."""

    kind: _Kind
    nullable: bool
    low: int | None = None
    high: int | None = None
    note: str = ""

    def allowed(self) -> str:
        """The human description used in every FieldProblem for this field."""
        note = f" ({self.note})" if self.note else ""
        if self.kind == "flag":
            text = "True or False"
            return f"{text}, or None{note}" if self.nullable else f"{text}{note}"
        if self.kind == "names":
            return "a set of NetConfig field names (other than best_effort)"
        if self.kind == "seconds":
            return (
                f"0 or a number of seconds from 1e-9 (1ns) to {MAX_POLL_TIMEOUT:_} (epoll's "
                "longest wait, about 24.8 days), or None to block"
            )
        else:
            unit = {"count": "an int", "bytes": "an int number of bytes", "micros": "an int of µs"}
            text = f"{unit[self.kind]} from {_show(self.low)} to {_show(self.high)}"
        return f"{text}{note}, or None" if self.nullable else f"{text}{note}"

    def problem(self, value: object) -> str | None:
        """None if ``value`` is allowed (exact types, inclusive range), else what is allowed."""
        if self.kind == "names":
            return _name_set_problem(value)
        return None if self._accepts(value) else self.allowed()

    def _accepts(self, value: object) -> bool:
        if value is None:
            return self.nullable
        if self.kind == "flag":
            return type(value) is bool
        if self.kind == "seconds":
            # A positive wait shorter than a nanosecond cannot be honoured: it would silently
            # become a non-blocking poll.
            return (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
                and (value == 0 or 1e-9 <= value <= MAX_POLL_TIMEOUT)
            )
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        assert self.low is not None
        assert self.high is not None
        return self.low <= value <= self.high


def _show(number: int | None) -> str:
    """Render a range bound the way people write it: 1 GiB rather than 1073741824."""
    assert number is not None
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if number >= size and number % size == 0:
            return f"{number // size} {unit}"
    return f"{number:_}" if number >= 100_000 else str(number)


def _setting(default: object, rule: _Rule) -> Any:
    # Returns Any so the attrs mypy plugin reads each call as the field's default.
    return attrs.field(default=default, metadata={_RULE: rule})


def _to_name_set(value: Iterable[str]) -> frozenset[str]:
    """Store best_effort as a frozenset; leave anything unconvertible for validation to report.

    The cast is deliberate: an unconvertible value lives only until ``__attrs_post_init__``
    rejects it with a FieldProblem, so no NetConfig ever holds it.
    """
    if isinstance(value, frozenset):
        return value
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return cast(frozenset[str], value)
    items = tuple(value)
    try:
        return frozenset(items)
    except TypeError:  # an unhashable element, e.g. a list inside the list
        return cast(frozenset[str], value if isinstance(value, Collection) else items)


@attrs.frozen(slots=True, kw_only=True)
class NetConfig:
    """Every socket and runtime setting, validated as a whole.

    Fields (default; allowed):

    * ``tcp_nodelay`` (True; bool), ``tcp_quickack`` (True; bool), ``reuse_port`` (True; bool),
      ``reuse_addr`` (True; bool)
    * ``busy_poll`` (None; µs 0..2**31-1, SO_BUSY_POLL), ``busy_poll_budget`` (None; packets
      1..65535), ``prefer_busy_poll`` (False; bool)
    * ``recv_buf``, ``send_buf`` (1 MiB; bytes 1..2**30 or None)
    * ``tos`` (None; 0..255), ``ttl`` (None; 1..255), ``ipv6_only`` (None; bool or None),
      ``hop_limit`` (None; 1..255)
    * ``tcp_backlog`` (1024; 0..65535), ``udp_gso_segment`` (None; bytes 1..65507),
      ``udp_gro`` (False), ``rx_drop_counter`` (True), ``udp_gso_batch`` (True; bool: the native
      driver's batch sends, and the aio driver's on Linux, coalesce runs of equal-size datagrams
      to one peer into UDP GSO sends; other drivers send datagram by datagram)
    * ``zerocopy_threshold`` (None = off; bytes 1..2**30): TCP sends of at least this many bytes
      and UDP GSO batch runs that large use MSG_ZEROCOPY (SO_ZEROCOPY; native driver only, other
      drivers report it skipped). Loopback and local delivery always copy; see the README.
    * ``poll_timeout`` (None = block; seconds >= 0), ``spin_budget`` (None; µs 0..1_000_000)
    * ``best_effort`` (empty): field names whose refusal by the kernel is reported, not raised

    Example:
        >>> import attrs
        >>> config = attrs.evolve(NetConfig(), tos=0x10, best_effort={"tos"})
        >>> config.tos, config.is_required("tos")
        (16, False)
        >>> try:
        ...     NetConfig(tos=300, tcp_nodelay=1)
        ... except ConfigError as exc:
        ...     print(exc.fields)
        ('tcp_nodelay', 'tos')
    """

    tcp_nodelay: bool = _setting(True, _Rule("flag", False, note="TCP_NODELAY"))
    tcp_quickack: bool = _setting(True, _Rule("flag", False, note="TCP_QUICKACK"))
    reuse_port: bool = _setting(True, _Rule("flag", False, note="SO_REUSEPORT"))
    reuse_addr: bool = _setting(True, _Rule("flag", False, note="SO_REUSEADDR"))
    busy_poll: int | None = _setting(None, _Rule("micros", True, 0, 2**31 - 1, "SO_BUSY_POLL"))
    busy_poll_budget: int | None = _setting(
        None, _Rule("count", True, 1, 65535, "packets, SO_BUSY_POLL_BUDGET")
    )
    prefer_busy_poll: bool = _setting(False, _Rule("flag", False, note="SO_PREFER_BUSY_POLL"))
    recv_buf: int | None = _setting(1 * MiB, _Rule("bytes", True, 1, 2**30, "SO_RCVBUF"))
    send_buf: int | None = _setting(1 * MiB, _Rule("bytes", True, 1, 2**30, "SO_SNDBUF"))
    tos: int | None = _setting(None, _Rule("count", True, 0, 255, "IP_TOS / IPV6_TCLASS"))
    ttl: int | None = _setting(None, _Rule("count", True, 1, 255, "IP_TTL"))
    ipv6_only: bool | None = _setting(None, _Rule("flag", True, note="IPV6_V6ONLY"))
    hop_limit: int | None = _setting(None, _Rule("count", True, 1, 255, "IPV6_UNICAST_HOPS"))
    tcp_backlog: int = _setting(1024, _Rule("count", False, 0, 65535, "listen() backlog"))
    udp_gso_segment: int | None = _setting(None, _Rule("bytes", True, 1, 65507, "UDP_SEGMENT"))
    udp_gro: bool = _setting(False, _Rule("flag", False, note="UDP_GRO"))
    rx_drop_counter: bool = _setting(True, _Rule("flag", False, note="SO_RXQ_OVFL"))
    udp_gso_batch: bool = _setting(True, _Rule("flag", False, note="UDP GSO in batch sends"))
    zerocopy_threshold: int | None = _setting(
        None, _Rule("bytes", True, 1, 2**30, "MSG_ZEROCOPY for sends this large, SO_ZEROCOPY")
    )
    poll_timeout: float | None = _setting(None, _Rule("seconds", True))
    spin_budget: int | None = _setting(
        None, _Rule("micros", True, 0, 1_000_000, "busy-wait before blocking")
    )
    best_effort: frozenset[str] = attrs.field(
        factory=frozenset, converter=_to_name_set, metadata={_RULE: _Rule("names", False)}
    )

    def __attrs_post_init__(self) -> None:
        problems = _problems({name: getattr(self, name) for name in _RULES})
        if problems:
            raise ConfigError(problems)

    # -- presets -------------------------------------------------------------------------

    @classmethod
    def low_latency(cls) -> NetConfig:
        """Busy-poll and spin instead of sleeping; busy-poll knobs and TOS are best-effort.

        Example:
            >>> config = NetConfig.low_latency()
            >>> config.busy_poll, config.spin_budget, config.is_required("busy_poll")
            (50, 50, False)
        """
        return cls(
            busy_poll=50,
            busy_poll_budget=8,
            prefer_busy_poll=True,
            spin_budget=50,
            tos=0x10,
            best_effort=frozenset({"busy_poll", "busy_poll_budget", "prefer_busy_poll", "tos"}),
        )

    @classmethod
    def high_throughput(cls) -> NetConfig:
        """Large buffers, UDP GRO, and Nagle/delayed ACKs left on to coalesce segments.

        Example:
            >>> config = NetConfig.high_throughput()
            >>> config.recv_buf // MiB, config.udp_gro, config.tcp_nodelay
            (8, True, False)
        """
        return cls(
            recv_buf=8 * MiB,
            send_buf=8 * MiB,
            udp_gro=True,
            tcp_nodelay=False,
            tcp_quickack=False,
        )

    @classmethod
    def power_efficient(cls) -> NetConfig:
        """Small buffers, no spinning or busy-polling, and a 100 ms poll timeout.

        Example:
            >>> config = NetConfig.power_efficient()
            >>> config.recv_buf // KiB, config.poll_timeout, config.spin_budget, config.busy_poll
            (256, 0.1, 0, None)
        """
        return cls(
            recv_buf=256 * KiB,
            send_buf=256 * KiB,
            tcp_quickack=False,
            poll_timeout=0.1,
            spin_budget=0,
            busy_poll=None,
        )

    # -- necessity -----------------------------------------------------------------------

    def is_required(self, field: str) -> bool:
        """Whether a refusal of ``field`` must raise: it differs from the default and is not
        listed in ``best_effort``.

        Example:
            >>> config = NetConfig(tos=0x10, ttl=64, best_effort={"tos"})
            >>> [config.is_required(field) for field in ("ttl", "tos", "reuse_port")]
            [True, False, False]
        """
        if field not in _SETTINGS:
            raise ValueError(f"{field!r} is not a NetConfig setting{_suggestion(field, _SETTINGS)}")
        differs: bool = getattr(self, field) != getattr(_DEFAULTS, field)
        return differs and field not in self.best_effort

    # -- mappings and environment --------------------------------------------------------

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, object], *, base: NetConfig | None = None
    ) -> NetConfig:
        """Build a config from a mapping (a TOML table, parsed JSON), starting from ``base``.

        Keys are field names, case-insensitive, with ``-`` accepted for ``_``. Values are native
        (bool, int, float, None, a list for ``best_effort``) or strings: booleans
        ``true/false/yes/no/on/off/1/0``; ``none``, ``null`` or ``""`` for None; sizes
        ``4MiB``, ``512KiB``, ``1GiB``, ``64k`` (KiB), ``2M`` (MiB), ``1MB`` (10**6), plain
        digits; durations with ``ns``, ``us``/``µs``, ``ms`` or ``s`` (converted to the field's
        unit; plain numbers are in that unit already); ``best_effort`` as ``"tos, busy_poll"``.
        Every problem, unknown keys included, is raised in one ConfigError.

        Example:
            >>> config = NetConfig.from_mapping({"RECV_BUF": "512KiB", "poll-timeout": "250ms"})
            >>> config.recv_buf, config.poll_timeout
            (524288, 0.25)
            >>> try:
            ...     NetConfig.from_mapping({"recv_buff": "4MiB", "tos": "loud"})
            ... except ConfigError as exc:
            ...     for problem in exc.problems:
            ...         print(problem.describe())
            recv_buff='4MiB': expected a NetConfig field name (did you mean 'recv_buf'?)
            tos='loud': expected an integer such as 16 or 0x10, or none
        """
        if not isinstance(mapping, Mapping):
            raise TypeError(
                "NetConfig.from_mapping takes a mapping of field names to values (a dict, a TOML "
                f"table), not {type(mapping).__name__}"
            )
        entries = ((key, key, value) for key, value in mapping.items())
        return cls._build(entries, base, repr)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], prefix: str = "HORIZON_", *, base: NetConfig | None = None
    ) -> NetConfig:
        """Build a config from environment variables named ``prefix + FIELD``.

        Pure: pass ``os.environ`` (or any mapping). Values use the same syntax as
        :meth:`from_mapping`; variables with the prefix that name no field are errors.

        Example:
            >>> env = {"HORIZON_RECV_BUF": "4MiB", "HORIZON_TCP_NODELAY": "off", "PATH": "/bin"}
            >>> config = NetConfig.from_env(env)
            >>> config.recv_buf, config.tcp_nodelay
            (4194304, False)
            >>> try:
            ...     NetConfig.from_env({"HORIZON_SEND_BUFF": "1M"})
            ... except ConfigError as exc:
            ...     print(exc.problems[0].allowed)
            a NetConfig field name (did you mean HORIZON_SEND_BUF?)
        """
        entries = (
            (key, key[len(prefix) :], value)
            for key, value in environ.items()
            if key.startswith(prefix)
        )
        return cls._build(entries, base, lambda name: prefix + name.upper())

    def to_mapping(self) -> dict[str, object]:
        """Every field as TOML-friendly values; ``from_mapping`` reads it back to an equal config.

        TOML has no null, so None is written as the string ``"none"``; ``best_effort`` is a
        sorted list.

        Example:
            >>> mapping = NetConfig.low_latency().to_mapping()
            >>> mapping["busy_poll"], mapping["ttl"], mapping["best_effort"][:2]
            (50, 'none', ['busy_poll', 'busy_poll_budget'])
            >>> NetConfig.from_mapping(mapping) == NetConfig.low_latency()
            True
        """
        out: dict[str, object] = {}
        for name in _RULES:
            value = getattr(self, name)
            if name == "best_effort":
                out[name] = sorted(value)
            else:
                out[name] = "none" if value is None else value
        return out

    @classmethod
    def _build(
        cls,
        entries: Iterable[tuple[object, object, object]],
        base: NetConfig | None,
        display: Callable[[str], str],
    ) -> NetConfig:
        # entries are (label shown to the user, key naming the field, raw value).
        values: dict[str, Any] = attrs.asdict(base or cls(), recurse=False)
        raw: dict[str, object] = {}
        labels: dict[str, str] = {}
        problems: list[FieldProblem] = []
        for label, key, value in entries:
            if not isinstance(key, str):
                problems.append(
                    FieldProblem(str(label), value, "a str key naming a NetConfig field")
                )
                continue
            name = _normalize(key)
            if name not in _RULES:
                hint = _suggestion(name, _RULES, display)
                problems.append(FieldProblem(str(label), value, f"a NetConfig field name{hint}"))
                continue
            if name in labels:
                allowed = f"one key per field, not both {labels[name]!r} and {label!r}"
                problems.append(FieldProblem(name, value, allowed))
                continue
            labels[name] = str(label)
            raw[name] = value
            try:
                values[name] = _parse(_RULES[name], value)
            except _ParseError as exc:
                problems.append(FieldProblem(name, value, exc.allowed))
        # Range and type problems of parsed values name what the user wrote ("2GiB"), not the
        # converted number.
        problems.extend(
            FieldProblem(p.field, raw.get(p.field, p.value), p.allowed) for p in _problems(values)
        )
        if problems:
            raise ConfigError(problems)
        return cls(**values)


_RULES: Final[Mapping[str, _Rule]] = {
    field.name: cast(_Rule, field.metadata[_RULE]) for field in attrs.fields(NetConfig)
}
# Names that can be listed in best_effort or asked about with is_required.
_SETTINGS: Final = frozenset(name for name in _RULES if name != "best_effort")


def resolve_config(config: object) -> NetConfig:
    """The config a driver uses when given ``config``: ``NetConfig()`` for None.

    Every driver calls this one check, so every driver refuses a non-NetConfig the same way: a
    TypeError naming what was passed and what is allowed (a mapping of settings is turned into a
    NetConfig with :meth:`NetConfig.from_mapping`, never guessed at).

    Example:
        >>> resolve_config(None) == NetConfig()
        True
        >>> resolve_config({"recv_buf": "4MiB"})
        Traceback (most recent call last):
        ...
        TypeError: config must be a NetConfig or None, not dict (build one with NetConfig.from_mapping)
    """
    if config is None:
        return NetConfig()
    if isinstance(config, NetConfig):
        return config
    hint = " (build one with NetConfig.from_mapping)" if isinstance(config, Mapping) else ""
    raise TypeError(f"config must be a NetConfig or None, not {type(config).__name__}{hint}")


def dual_stack_config(config: NetConfig) -> NetConfig:
    """``config`` for a dual-stack ``[::]`` socket: ``ipv6_only=False``.

    ConfigError if it explicitly asks for IPv6-only: a dual-stack socket that is IPv6-only is a
    contradiction. Every driver's ``bind_udp_dual_stack`` calls this one check.

    Example:
        >>> dual_stack_config(NetConfig()).ipv6_only
        False
        >>> try:
        ...     dual_stack_config(NetConfig(ipv6_only=True))
        ... except ConfigError as exc:
        ...     print(exc.fields)
        ('ipv6_only',)
    """
    if config.ipv6_only is True:
        raise ConfigError([FieldProblem("ipv6_only", True, "None or False for a dual-stack socket")])
    if config.ipv6_only is False:
        return config
    return attrs.evolve(config, ipv6_only=False)


def _normalize(key: str) -> str:
    return key.strip().lower().replace("-", "_")


def _suggestion(name: str, choices: Iterable[str], display: Callable[[str], str] = repr) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {display(close[0])}?)" if close else ""


def _problems(values: Mapping[str, object]) -> list[FieldProblem]:
    """Every FieldProblem of a complete set of field values, in field order."""
    problems = []
    for name, rule in _RULES.items():
        allowed = rule.problem(values[name])
        if allowed is not None:
            problems.append(FieldProblem(name, values[name], allowed))
    return problems


def _name_set_problem(value: object) -> str | None:
    allowed = _RULES["best_effort"].allowed()
    if isinstance(value, str | bytes):
        return f"{allowed}; a bare {type(value).__name__} is not a set, write {{{value!r}}}"
    if not isinstance(value, Iterable):
        return f"{allowed}; got {type(value).__name__}"
    # Only re-iterable values get here: the converter and _parse turn iterators into tuples.
    items = list(value)
    not_str = sorted(repr(item) for item in items if not isinstance(item, str))
    if not_str:
        return f"{allowed}; not a str: {', '.join(not_str)}"
    unknown = sorted({item for item in items if item not in _SETTINGS})
    if unknown:
        named = ", ".join(f"{item!r}{_suggestion(item, _SETTINGS)}" for item in unknown)
        return f"{allowed}; unknown: {named}"
    return None


# -- text parsing -------------------------------------------------------------------------


class _ParseError(Exception):
    def __init__(self, allowed: str) -> None:
        super().__init__(allowed)
        self.allowed = allowed


# ASCII digits only (re.ASCII: "\d" and "\s" would also take "١٢" or a no-break space), with
# underscores only between digits, as in Python literals ("1_000", never "1__0" or "1_").
# Exponents are capped at three digits: Fraction("1e999999999") would build a huge integer.
_DIGITS: Final = r"\d(?:_?\d)*"
_NUMBER: Final = rf"[+-]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?\d{{1,3}})?"
_QUANTITY: Final = re.compile(rf"(?P<number>{_NUMBER})\s*(?P<unit>[^\d\s.]*)", re.ASCII)
_ASCII_SPACE: Final = " \t\n\r\f\v"
_INTEGER: Final = re.compile(rf"[+-]?(?:{_DIGITS}|0[xX](?:_?[0-9a-fA-F])+)", re.ASCII)

_SIZE_UNITS: Final[Mapping[str, int]] = {
    "": 1,
    "b": 1,
    "k": KiB,
    "kib": KiB,
    "kb": 1000,
    "m": MiB,
    "mib": MiB,
    "mb": 1000**2,
    "g": GiB,
    "gib": GiB,
    "gb": 1000**3,
}
# In nanoseconds, so every supported unit converts exactly.
_DURATION_UNITS: Final[Mapping[str, int]] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 MICRO SIGN
    "μs": 1_000,  # U+03BC GREEK SMALL LETTER MU: both are typed for "micro"
    "ms": 1_000_000,
    "s": 1_000_000_000,
}
_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})
_NONE: Final = frozenset({"none", "null", ""})


def _parse(rule: _Rule, value: object) -> object:
    """Turn a mapping value into the field's native value.

    Native values pass through unchanged: validation reports their type and range, the same
    way the constructor does.
    """
    if rule.kind == "names":
        if isinstance(value, str):
            return frozenset(_normalize(part) for part in value.split(",") if part.strip())
        if isinstance(value, list | tuple | set | frozenset):
            # A tuple, not a frozenset: an unhashable element must become a FieldProblem.
            return tuple(_normalize(v) if isinstance(v, str) else v for v in value)
        return value
    if not isinstance(value, str):
        return value
    text = value.strip(_ASCII_SPACE)
    if text.lower() in _NONE:
        if rule.nullable:
            return None
        raise _ParseError(_text_allowed(rule))
    try:
        return _parse_text(rule, text)
    except (ValueError, OverflowError, ZeroDivisionError):
        # int() refuses over 4300 digits, float() overflows: both mean "not a usable number".
        raise _ParseError(_text_allowed(rule)) from None


def _parse_text(rule: _Rule, text: str) -> object:
    if rule.kind == "flag":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(text)
    if rule.kind == "count":
        if not _INTEGER.fullmatch(text):
            raise ValueError(text)
        return int(text, 0) if "x" in text.lower() else int(text.replace("_", ""))
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(text)
    number = Fraction(match["number"].replace("_", ""))
    unit = match["unit"].lower()
    if rule.kind == "bytes":
        size = number * _SIZE_UNITS[unit] if unit in _SIZE_UNITS else None
        if size is None:
            raise ValueError(text)
        if size.denominator != 1:
            raise _ParseError("a whole number of bytes")
        return int(size)
    unit = unit or ("s" if rule.kind == "seconds" else "us")
    if unit not in _DURATION_UNITS:
        raise ValueError(text)
    nanos = number * _DURATION_UNITS[unit]
    if rule.kind == "seconds":
        if 0 < abs(nanos) < 1:
            # float() would round it to 0.0: a silent non-blocking poll.
            raise _ParseError(f"0 or a duration of at least 1ns ({text} is shorter)")
        return float(nanos / 1_000_000_000)
    micros = nanos / 1_000
    if micros.denominator != 1:
        raise _ParseError(f"a whole number of microseconds ({text} is {float(micros):g}µs)")
    return int(micros)


def _text_allowed(rule: _Rule) -> str:
    """What a string value for ``rule`` may look like, for parse problems."""
    text = {
        "flag": "true/false, yes/no, on/off or 1/0",
        "count": "an integer such as 16 or 0x10",
        "bytes": "a size such as 4MiB, 512KiB, 64k, 2M, 1MB or 1048576",
        "micros": "a duration such as 50us, 1ms or 1500ns (plain numbers are µs)",
        "seconds": "a duration such as 0.5s, 250ms or 50us (plain numbers are seconds)",
        "names": "comma-separated field names",
    }[rule.kind]
    return f"{text}, or none" if rule.nullable else text


# Last: building it runs the validation defined above. is_required compares against it.
_DEFAULTS: Final = NetConfig()
