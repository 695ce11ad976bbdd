"""Public hypothesis strategies for property-testing code built on Horizon Sockets.

Rules this module obeys:

* It is the only horizon_core module that imports hypothesis; nothing else in the core
  depends on it, so hypothesis stays a test-time dependency.
* Config strategies read the same per-field rules that ``NetConfig`` validates with, so a
  "valid" value here is exactly a value ``NetConfig`` accepts, and an "invalid" one is one it
  rejects.
* Every strategy leans on the extremes (range bounds, None, empty and maximum sizes), where
  bugs live, and stays small enough for the default hypothesis buffer.

Example:
    >>> from hypothesis import given, settings
    >>> from horizon_core.strategies import net_configs, socket_addresses
    >>> @settings(max_examples=25)
    ... @given(net_configs(), socket_addresses(family=4))
    ... def test_round_trips(config, address):
    ...     assert NetConfig.from_mapping(config.to_mapping()) == config
    ...     assert SocketAddress.parse(str(address)) == address
    >>> test_round_trips()
"""

from __future__ import annotations

import ipaddress
import math
from fractions import Fraction
from typing import Any, Final

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from horizon_core.addresses import SocketAddress
from horizon_core.config import _RULES, _SETTINGS, GiB, KiB, MiB, NetConfig, _Rule
from horizon_core.events import MAX_POLL_TIMEOUT

__all__ = [
    "config_mappings",
    "invalid_config_kwargs",
    "net_configs",
    "payloads",
    "socket_addresses",
]

_FIELDS: Final = sorted(_RULES)
_SETTING_NAMES: Final = sorted(_SETTINGS)
_DEFAULTS: Final = NetConfig()

# Values that are wrong for every field: text and bytes where native values are expected,
# containers where scalars are expected.
_JUNK: Final[SearchStrategy[object]] = st.sampled_from(["1", "true", "none", b"\x01", [1], {}])

_SIZE_UNITS: Final = (
    ("", 1),
    ("B", 1),
    ("k", KiB),
    ("KiB", KiB),
    ("kb", 1000),
    ("KB", 1000),
    ("M", MiB),
    ("MiB", MiB),
    ("MB", 1000**2),
    ("G", GiB),
    ("gib", GiB),
    ("GB", 1000**3),
)
# Nanoseconds per unit; "" means the field's own unit and is handled per field.
_DURATION_UNITS: Final = (("ns", 1), ("us", 1_000), ("µs", 1_000), ("ms", 10**6), ("s", 10**9))


def net_configs() -> SearchStrategy[NetConfig]:
    """Valid configs: every field drawn from its full range, its bounds, None and its default.

    Presets are drawn too, so tests see the configurations users actually start from.

    Example:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=25)
        ... @given(net_configs())
        ... def test_valid(config):
        ...     assert isinstance(config.best_effort, frozenset)
        >>> test_valid()
    """
    built = st.builds(
        NetConfig, **{name: _valid_values(name, rule) for name, rule in _RULES.items()}
    )
    presets = st.sampled_from(
        [
            NetConfig(),
            NetConfig.low_latency(),
            NetConfig.high_throughput(),
            NetConfig.power_efficient(),
        ]
    )
    return st.one_of(presets, built)


def invalid_config_kwargs() -> SearchStrategy[tuple[dict[str, object], frozenset[str]]]:
    """``(kwargs, bad_fields)``: NetConfig keyword arguments in which exactly ``bad_fields``
    are invalid (wrong type, out of range, None where not allowed, unknown names) and every
    other given field is valid. ``NetConfig(**kwargs)`` must raise one ConfigError naming
    exactly ``bad_fields``.

    Example:
        >>> from hypothesis import given, settings
        >>> from horizon_core.errors import ConfigError
        >>> @settings(max_examples=25)
        ... @given(invalid_config_kwargs())
        ... def test_rejected(case):
        ...     kwargs, bad = case
        ...     try:
        ...         NetConfig(**kwargs)
        ...     except ConfigError as exc:
        ...         assert set(exc.fields) == bad
        ...     else:
        ...         raise AssertionError("accepted")
        >>> test_rejected()
    """
    return _invalid_kwargs()


def config_mappings() -> SearchStrategy[dict[str, object]]:
    """Valid mappings for ``NetConfig.from_mapping``, mostly in text form with units.

    Keys vary in case and ``-``/``_`` spelling; values are sizes (``"1.5MiB"``, ``"64k"``),
    durations (``"50us"``, ``"0.25s"``), booleans (``"on"``, ``"No"``), ``"none"``,
    comma-separated ``best_effort`` lists and, sometimes, native values. Every text value is
    exact: it converts to a whole value in range.

    Example:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=25)
        ... @given(config_mappings())
        ... def test_parses(mapping):
        ...     NetConfig.from_mapping(mapping)
        >>> test_parses()
    """
    return _mappings()


def payloads(max_size: int = 65507) -> SearchStrategy[bytes]:
    """Datagram payloads of 0..``max_size`` bytes (65507: the largest IPv4 UDP payload).

    Empty and exactly-``max_size`` payloads are drawn often; large payloads repeat a short
    random pattern, which keeps generation cheap while every byte still matters.

    Example:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=25)
        ... @given(payloads(max_size=1500))
        ... def test_size(data):
        ...     assert len(data) <= 1500
        >>> test_size()
    """
    if type(max_size) is not int or max_size < 0:
        raise ValueError(f"max_size must be an int >= 0, got {max_size!r}")
    patterns = st.binary(min_size=1, max_size=32)
    return st.one_of(
        st.binary(max_size=min(max_size, 256)),
        st.builds(_tile, patterns, st.integers(0, max_size)),
        st.builds(_tile, patterns, st.sampled_from([0, max_size])),
    )


def socket_addresses(family: int | None = None) -> SearchStrategy[SocketAddress]:
    """Socket addresses of one family (4 or 6) or both (None).

    IPv6 addresses include v4-mapped ones, and draw flow labels and scope ids over their whole
    ranges; ports include 0 and 65535.

    Example:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=25)
        ... @given(socket_addresses(family=6))
        ... def test_packed_round_trip(addr):
        ...     buf = bytearray(32)
        ...     addr.pack_into(buf, 0)
        ...     assert SocketAddress.unpack_from(buf, 0) == addr
        >>> test_packed_round_trip()
    """
    if family not in (None, 4, 6):
        raise ValueError(f"family must be 4, 6 or None, got {family!r}")
    ports = st.one_of(st.sampled_from([0, 1, 65535]), st.integers(0, 65535))
    v4 = st.builds(SocketAddress, st.ip_addresses(v=4), ports)
    v6_hosts = st.one_of(
        st.ip_addresses(v=6),
        st.ip_addresses(v=4).map(lambda a: ipaddress.IPv6Address(f"::ffff:{a}")),
    )
    v6 = st.builds(
        SocketAddress,
        v6_hosts,
        ports,
        flowinfo=st.one_of(st.just(0), st.integers(0, 2**20 - 1)),
        scope_id=st.one_of(st.just(0), st.integers(0, 2**32 - 1)),
    )
    if family == 4:
        return v4
    if family == 6:
        return v6
    return st.one_of(v4, v6)


# -- per-field value strategies -------------------------------------------------------------


def _valid_values(name: str, rule: _Rule) -> SearchStrategy[Any]:
    default = st.just(getattr(_DEFAULTS, name))
    none = [st.none()] if rule.nullable else []
    if rule.kind == "flag":
        return st.one_of(default, st.booleans(), *none)
    if rule.kind == "names":
        return st.one_of(default, st.frozensets(st.sampled_from(_SETTING_NAMES)))
    if rule.kind == "seconds":
        return st.one_of(
            default,
            *none,
            st.sampled_from([0.0, 1e-9, float(MAX_POLL_TIMEOUT)]),
            st.floats(min_value=1e-9, max_value=MAX_POLL_TIMEOUT),
            st.integers(0, MAX_POLL_TIMEOUT),
        )
    assert rule.low is not None
    assert rule.high is not None
    return st.one_of(
        default, *none, st.sampled_from([rule.low, rule.high]), st.integers(rule.low, rule.high)
    )


def _invalid_values(rule: _Rule) -> SearchStrategy[object]:
    none = [] if rule.nullable else [st.none()]
    if rule.kind == "flag":
        # 0 and 1 first: the classic "truthy int" mistake exact typing exists to catch.
        return st.one_of(st.sampled_from([0, 1]), st.integers(), st.floats(), _JUNK, *none)
    if rule.kind == "names":
        unknown = st.text(min_size=1, max_size=12).filter(lambda s: s not in _SETTINGS)
        names = st.frozensets(st.sampled_from(_SETTING_NAMES), max_size=3)
        return st.one_of(
            st.sampled_from(["tos", "", 5, None, 1.5, "tos,ttl"]),
            st.builds(lambda ok, bad: ok | {bad}, names, unknown),
            st.builds(lambda ok, bad: [*ok, bad], names, st.one_of(st.integers(), st.just(b"x"))),
            st.builds(lambda ok: ok | {"best_effort"}, names),
            st.just([["tos"]]),
        )
    if rule.kind == "seconds":
        return st.one_of(
            st.booleans(),
            st.sampled_from([math.nan, math.inf, -math.inf, -1e-9, 1e-10, MAX_POLL_TIMEOUT + 1]),
            st.floats(max_value=0.0, exclude_max=True),
            st.floats(min_value=0.0, max_value=1e-9, exclude_min=True, exclude_max=True),
            st.floats(min_value=MAX_POLL_TIMEOUT, exclude_min=True),
            st.integers(max_value=-1),
            _JUNK,
        )
    assert rule.low is not None
    assert rule.high is not None
    return st.one_of(
        st.booleans(),
        st.floats(),  # even 1.0: an int field takes ints only
        st.sampled_from([rule.low - 1, rule.high + 1]),
        st.integers(max_value=rule.low - 1),
        st.integers(min_value=rule.high + 1),
        _JUNK,
        *none,
    )


@st.composite
def _invalid_kwargs(draw: st.DrawFn) -> tuple[dict[str, object], frozenset[str]]:
    bad = draw(st.sets(st.sampled_from(_FIELDS), min_size=1))
    rest = [name for name in _FIELDS if name not in bad]
    good = draw(st.sets(st.sampled_from(rest))) if rest else set()
    kwargs: dict[str, object] = {}
    for name in _FIELDS:
        if name in bad:
            kwargs[name] = draw(_invalid_values(_RULES[name]))
        elif name in good:
            kwargs[name] = draw(_valid_values(name, _RULES[name]))
    return kwargs, frozenset(bad)


# -- text forms for from_mapping -------------------------------------------------------------


def _spellings(name: str) -> SearchStrategy[str]:
    dashed = name.replace("_", "-")
    return st.sampled_from([name, name.upper(), dashed, dashed.upper()])


def _decimal(value: Fraction) -> str:
    """Exact decimal text of a non-negative fraction whose denominator divides a power of 10.

    Every unit here is a product of 2s and 5s, so every quotient below has such a denominator.
    """
    places = 0
    while (value * 10**places).denominator != 1:
        places += 1
    digits = str(int(value * 10**places))
    if places == 0:
        return digits
    digits = digits.rjust(places + 1, "0")
    return f"{digits[:-places]}.{digits[-places:]}"


@st.composite
def _size_text(draw: st.DrawFn, low: int, high: int) -> str:
    size = draw(st.one_of(st.sampled_from([low, high]), st.integers(low, high)))
    unit, factor = draw(st.sampled_from(_SIZE_UNITS))
    space = draw(st.sampled_from(["", " "]))
    return f"{_decimal(Fraction(size, factor))}{space if unit else ''}{unit}"


@st.composite
def _micros_text(draw: st.DrawFn, low: int, high: int) -> str:
    micros = draw(st.one_of(st.sampled_from([low, high]), st.integers(low, high)))
    unit, nanos = draw(st.sampled_from((("", 1_000), *_DURATION_UNITS)))
    return f"{_decimal(Fraction(micros * 1_000, nanos))}{unit}"


@st.composite
def _seconds_text(draw: st.DrawFn) -> str:
    nanos = draw(st.one_of(st.just(0), st.integers(0, 10**12)))
    unit, per = draw(st.sampled_from((("", 10**9), *_DURATION_UNITS)))
    return f"{_decimal(Fraction(nanos, per))}{unit}"


@st.composite
def _names_value(draw: st.DrawFn) -> object:
    names = sorted(draw(st.sets(st.sampled_from(_SETTING_NAMES), max_size=4)))
    spelled = [draw(_spellings(name)) for name in names]
    as_text = draw(st.booleans())
    if as_text:
        return draw(st.sampled_from([",", ", ", " , "])).join(spelled)
    return spelled


def _text_values(name: str, rule: _Rule) -> SearchStrategy[object]:
    nones: list[SearchStrategy[object]] = (
        [st.sampled_from(["none", "None", "null", ""])] if rule.nullable else []
    )
    native = _valid_values(name, rule)
    if rule.kind == "flag":
        words = ["true", "false", "yes", "no", "on", "off", "1", "0", "True", "OFF", "Yes"]
        return st.one_of(st.sampled_from(words), *nones, native)
    if rule.kind == "names":
        return st.one_of(_names_value(), native)
    if rule.kind == "seconds":
        return st.one_of(_seconds_text(), *nones, native)
    assert rule.low is not None
    assert rule.high is not None
    if rule.kind == "bytes":
        return st.one_of(_size_text(rule.low, rule.high), *nones, native)
    if rule.kind == "micros":
        return st.one_of(_micros_text(rule.low, rule.high), *nones, native)
    counts = st.integers(rule.low, rule.high)
    return st.one_of(counts.map(str), counts.map(hex), *nones, native)


@st.composite
def _mappings(draw: st.DrawFn) -> dict[str, object]:
    names = sorted(draw(st.sets(st.sampled_from(_FIELDS))))
    return {draw(_spellings(name)): draw(_text_values(name, _RULES[name])) for name in names}


def _tile(pattern: bytes, size: int) -> bytes:
    return (pattern * (size // len(pattern) + 1))[:size]


# == fault plans (for horizon_drivers.sim) ===================================================
# Added by the simulated-network work; everything above belongs to the config strategies.

from horizon_core.faults import FaultPlan  # noqa: E402  (kept inside this section on purpose)

__all__ += ["fault_plans"]


def fault_plans(
    *, max_probability: float = 0.5, max_delay: float = 0.1, call_faults: bool = True
) -> SearchStrategy[FaultPlan]:
    """Valid :class:`~horizon_core.faults.FaultPlan` values for the simulated network.

    Each probability is 0 (often: most runs keep most faults off, so each fault is seen alone)
    or up to ``max_probability``; delay ranges lie within ``0..max_delay`` virtual seconds.
    ``call_faults=False`` keeps chance EAGAIN/ENOBUFS and partial writes off (network faults only).

    Example:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=25)
        ... @given(fault_plans(max_probability=0.2))
        ... def test_bounded(plan):
        ...     assert plan.loss <= 0.2 and plan.latency[1] <= 0.1
        >>> test_bounded()
    """
    if not 0 <= max_probability <= 1:
        raise ValueError(f"max_probability must be from 0 to 1, got {max_probability!r}")
    if not 0 < max_delay <= 3600:
        raise ValueError(f"max_delay must be above 0 and at most 3600, got {max_delay!r}")
    return _fault_plans(max_probability, max_delay, call_faults)


@st.composite
def _fault_plans(
    draw: st.DrawFn, max_probability: float, max_delay: float, call_faults: bool
) -> FaultPlan:
    def chance() -> float:
        return draw(st.one_of(st.just(0.0), st.floats(0.0, max_probability)))

    def span(positive: bool = False) -> tuple[float, float]:
        low = draw(st.floats(0.0, max_delay))
        high = draw(st.floats(low, max_delay))
        if positive and high == 0:
            high = max_delay
        return (low, high)

    reordering = chance()
    # A perfect-latency network half the time: zero delay is where ordering bugs hide least.
    latency = (0.0, 0.0) if draw(st.booleans()) else span()
    return FaultPlan(
        loss=chance(),
        duplication=chance(),
        reordering=reordering,
        reorder_delay=span(positive=reordering > 0),
        latency=latency,
        truncation=chance(),
        port_unreachable=chance(),
        send_eagain=chance() if call_faults else 0.0,
        send_enobufs=chance() if call_faults else 0.0,
        recv_eagain=chance() if call_faults else 0.0,
        partial_write=chance() if call_faults else 0.0,
    )
