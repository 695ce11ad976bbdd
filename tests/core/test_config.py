"""NetConfig: the field table (README, Configuration), validation, presets and mappings."""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from horizon_core.config import GiB, KiB, MiB, NetConfig
from horizon_core.errors import ConfigError
from horizon_core.strategies import config_mappings, invalid_config_kwargs, net_configs

# field -> default, copied from the spec table (not from the code under test).
SPEC_DEFAULTS: dict[str, object] = {
    "tcp_nodelay": True,
    "tcp_quickack": True,
    "reuse_port": True,
    "reuse_addr": True,
    "busy_poll": None,
    "busy_poll_budget": None,
    "prefer_busy_poll": False,
    "recv_buf": 1 * MiB,
    "send_buf": 1 * MiB,
    "tos": None,
    "ttl": None,
    "ipv6_only": None,
    "hop_limit": None,
    "tcp_backlog": 1024,
    "udp_gso_segment": None,
    "udp_gro": False,
    "rx_drop_counter": True,
    "udp_gso_batch": True,
    "zerocopy_threshold": None,
    "poll_timeout": None,
    "spin_budget": None,
    "best_effort": frozenset(),
}

BOOL_FIELDS = [
    "tcp_nodelay",
    "tcp_quickack",
    "reuse_port",
    "reuse_addr",
    "prefer_busy_poll",
    "udp_gro",
    "rx_drop_counter",
    "udp_gso_batch",
]

# field -> (nullable, low, high) for the int fields of the spec table.
INT_RANGES: dict[str, tuple[bool, int, int]] = {
    "busy_poll": (True, 0, 2**31 - 1),
    "busy_poll_budget": (True, 1, 65535),
    "recv_buf": (True, 1, 2**30),
    "send_buf": (True, 1, 2**30),
    "tos": (True, 0, 255),
    "ttl": (True, 1, 255),
    "hop_limit": (True, 1, 255),
    "tcp_backlog": (False, 0, 65535),
    "udp_gso_segment": (True, 1, 65507),
    "spin_budget": (True, 0, 1_000_000),
}

PROPERTY = settings(max_examples=100, deadline=None)


def rejected_fields(**kwargs: object) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        NetConfig(**kwargs)  # type: ignore[arg-type]
    return info.value.fields


# -- the spec table ---------------------------------------------------------------------------


def test_constants() -> None:
    assert (KiB, MiB, GiB) == (1024, 1024**2, 1024**3)


def test_fields_and_defaults_equal_the_spec_table() -> None:
    config = NetConfig()
    assert [f.name for f in attrs.fields(NetConfig)] == list(SPEC_DEFAULTS)
    assert attrs.asdict(config, recurse=False) == SPEC_DEFAULTS
    assert type(config.best_effort) is frozenset


def test_frozen_slotted_kw_only() -> None:
    config = NetConfig()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.tos = 1  # type: ignore[misc]
    assert not hasattr(config, "__dict__")
    with pytest.raises(TypeError):
        NetConfig(True)  # type: ignore[call-arg]
    assert hash(config) == hash(NetConfig())


@pytest.mark.parametrize("field", BOOL_FIELDS)
def test_bool_fields_take_exact_bools(field: str) -> None:
    for value in (True, False):
        assert getattr(NetConfig(**{field: value}), field) is value  # type: ignore[arg-type]
    for bad in (1, 0, 1.0, "true", None):
        assert rejected_fields(**{field: bad}) == (field,)


def test_ipv6_only_is_a_nullable_bool() -> None:
    for value in (True, False, None):
        assert NetConfig(ipv6_only=value).ipv6_only is value
    for bad in (1, 0, "yes"):
        assert rejected_fields(ipv6_only=bad) == ("ipv6_only",)


@pytest.mark.parametrize("field", INT_RANGES)
def test_int_fields_bounds_and_exact_types(field: str) -> None:
    nullable, low, high = INT_RANGES[field]
    for value in (low, high, (low + high) // 2):
        assert getattr(NetConfig(**{field: value}), field) == value  # type: ignore[arg-type]
    for bad in (low - 1, high + 1, True, False, 1.5, float(low), str(low)):
        assert rejected_fields(**{field: bad}) == (field,), bad
    if nullable:
        assert getattr(NetConfig(**{field: None}), field) is None  # type: ignore[arg-type]
    else:
        assert rejected_fields(**{field: None}) == (field,)


def test_poll_timeout_takes_int_or_float_seconds() -> None:
    for value in (None, 0, 0.0, 1e-9, 0.001, 5, 2_147_483):
        assert NetConfig(poll_timeout=value).poll_timeout == value
    # Past epoll's longest wait, and positive waits below 1ns (they would poll without waiting).
    for bad in (True, False, -0.001, -1, math.nan, math.inf, "1s", 2_147_484, 1e9, 1e-10, 1e-300):
        assert rejected_fields(poll_timeout=bad) == ("poll_timeout",), bad


@pytest.mark.parametrize("text", ["1e-999", "0.5ns", "1e-10"])
def test_a_duration_text_below_one_nanosecond_is_refused_not_rounded_to_zero(text: str) -> None:
    with pytest.raises(ConfigError, match="at least 1ns"):
        NetConfig.from_mapping({"poll_timeout": text})


@pytest.mark.parametrize(
    "text",
    ["\u0661\u0666", "\uff11\uff16", "16\u00a0KiB", "\u00a016", "1__0", "1_", "_1", "0x_", "16KiB\u2009"],
    ids=["arabic-indic", "fullwidth", "nbsp-inside", "nbsp-before", "double-underscore",
         "trailing-underscore", "leading-underscore", "hex-underscore-only", "thin-space-after"],
)
def test_numbers_are_ascii_with_underscores_only_between_digits(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        NetConfig.from_mapping({"recv_buf": text, "tos": text})
    assert {p.field for p in caught.value.problems} == {"recv_buf", "tos"}


def test_underscores_between_digits_and_ascii_spaces_are_fine() -> None:
    config = NetConfig.from_mapping({"recv_buf": " 1_024 KiB\t", "tos": "0x1_0"})
    assert (config.recv_buf, config.tos) == (1024 * 1024, 16)


def test_a_huge_bad_value_is_cut_in_the_message() -> None:
    with pytest.raises(ConfigError) as caught:
        NetConfig.from_mapping({"tos": "9" * 100_000})
    assert len(str(caught.value)) < 400
    assert "(100002 characters)" in str(caught.value)


@pytest.mark.parametrize("bad", ["recv_buf=4MiB", None, [("recv_buf", "4MiB")], 5])
def test_from_mapping_refuses_what_is_not_a_mapping_with_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="mapping"):
        NetConfig.from_mapping(bad)  # type: ignore[arg-type]


def test_best_effort_converts_any_iterable_of_names() -> None:
    expected = frozenset({"tos", "ttl"})
    for value in (["tos", "ttl"], ("ttl", "tos"), {"tos", "ttl"}, (n for n in ("tos", "ttl"))):
        assert NetConfig(best_effort=value).best_effort == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tos", "a bare str is not a set"),
        (5, "got int"),
        (None, "got NoneType"),
        ([1, "tos"], "not a str: 1"),
        ([["tos"]], "not a str: ['tos']"),
        (iter([["tos"]]), "not a str: ['tos']"),
        ({"recv_buff"}, "unknown: 'recv_buff' (did you mean 'recv_buf'?)"),
        ({"best_effort"}, "unknown: 'best_effort'"),
        ({"TOS"}, "unknown: 'TOS'"),
    ],
)
def test_best_effort_problems_are_field_problems(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        NetConfig(best_effort=value)  # type: ignore[arg-type]
    (problem,) = info.value.problems
    assert problem.field == "best_effort"
    assert message in problem.allowed


def test_all_bad_fields_in_one_error() -> None:
    with pytest.raises(ConfigError) as info:
        NetConfig(tos=300, tcp_nodelay=1, recv_buf=0, best_effort={"nope"})  # type: ignore[arg-type]
    err = info.value
    assert isinstance(err, ValueError)
    assert err.fields == ("tcp_nodelay", "recv_buf", "tos", "best_effort")
    for field in err.fields:
        assert field in str(err)
    assert all(p.allowed for p in err.problems)
    assert err.problems[2].allowed == "an int from 0 to 255 (IP_TOS / IPV6_TCLASS), or None"


@PROPERTY
@given(invalid_config_kwargs())
def test_every_invalid_kwargs_set_is_rejected_naming_exactly_its_bad_fields(
    case: tuple[dict[str, object], frozenset[str]],
) -> None:
    kwargs, bad = case
    with pytest.raises(ConfigError) as info:
        NetConfig(**kwargs)  # type: ignore[arg-type]
    assert set(info.value.fields) == bad
    assert len(info.value.problems) == len(bad), "one problem per field"


@PROPERTY
@given(net_configs())
def test_every_valid_config_is_accepted_and_survives_evolve(config: NetConfig) -> None:
    values = attrs.asdict(config, recurse=False)
    assert NetConfig(**values) == config
    assert attrs.evolve(config) == config


@PROPERTY
@given(net_configs(), invalid_config_kwargs())
def test_evolve_revalidates(
    config: NetConfig, case: tuple[dict[str, object], frozenset[str]]
) -> None:
    kwargs, bad = case
    with pytest.raises(ConfigError) as info:
        attrs.evolve(config, **kwargs)  # type: ignore[arg-type]
    assert set(info.value.fields) == bad


# -- presets and necessity --------------------------------------------------------------------

PRESETS: dict[str, dict[str, object]] = {
    "low_latency": {
        "busy_poll": 50,
        "busy_poll_budget": 8,
        "prefer_busy_poll": True,
        "spin_budget": 50,
        "tos": 0x10,
        "best_effort": frozenset({"busy_poll", "busy_poll_budget", "prefer_busy_poll", "tos"}),
    },
    "high_throughput": {
        "recv_buf": 8 * MiB,
        "send_buf": 8 * MiB,
        "udp_gro": True,
        "tcp_nodelay": False,
        "tcp_quickack": False,
    },
    "power_efficient": {
        "recv_buf": 256 * KiB,
        "send_buf": 256 * KiB,
        "tcp_quickack": False,
        "poll_timeout": 0.1,
        "spin_budget": 0,
        "busy_poll": None,
    },
}


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_are_complete_valid_configs(preset: str) -> None:
    config = getattr(NetConfig, preset)()
    assert config == NetConfig(**PRESETS[preset])  # type: ignore[arg-type]
    expected = {**SPEC_DEFAULTS, **PRESETS[preset]}
    assert attrs.asdict(config, recurse=False) == expected
    assert getattr(NetConfig, preset)() == config, "a preset is a fresh, equal value every time"
    with pytest.raises(ConfigError):
        attrs.evolve(config, ttl=0)
    assert attrs.evolve(config, ttl=64).ttl == 64


def test_low_latency_necessity() -> None:
    config = NetConfig.low_latency()
    assert not config.is_required("busy_poll")
    assert not config.is_required("tos")
    assert config.is_required("spin_budget"), "changed and not listed in best_effort"
    assert not config.is_required("recv_buf"), "left at its default"


@PROPERTY
@given(net_configs(), st.sampled_from([f for f in SPEC_DEFAULTS if f != "best_effort"]))
def test_is_required_follows_the_necessity_rule(config: NetConfig, field: str) -> None:
    differs = getattr(config, field) != SPEC_DEFAULTS[field]
    assert config.is_required(field) == (differs and field not in config.best_effort)


def test_is_required_rejects_non_settings() -> None:
    with pytest.raises(ValueError, match=r"did you mean 'recv_buf'"):
        NetConfig().is_required("recv_buff")
    with pytest.raises(ValueError, match="not a NetConfig setting"):
        NetConfig().is_required("best_effort")


# -- from_mapping / to_mapping -----------------------------------------------------------------


@PROPERTY
@given(net_configs())
def test_to_mapping_round_trips_and_is_toml_friendly(config: NetConfig) -> None:
    mapping = config.to_mapping()
    assert list(mapping) == list(SPEC_DEFAULTS)
    for value in mapping.values():
        assert isinstance(value, bool | int | float | str | list)
        assert value is not None
    assert isinstance(mapping["best_effort"], list)
    assert NetConfig.from_mapping(mapping) == config
    assert NetConfig.from_mapping(mapping, base=NetConfig.low_latency()) == config


@PROPERTY
@given(config_mappings())
def test_valid_mappings_parse_and_round_trip(mapping: dict[str, object]) -> None:
    config = NetConfig.from_mapping(mapping)
    assert NetConfig.from_mapping(config.to_mapping()) == config


@pytest.mark.parametrize(
    ("field", "text", "expected"),
    [
        ("recv_buf", "4MiB", 4 * MiB),
        ("recv_buf", "512KiB", 512 * KiB),
        ("recv_buf", "1GiB", GiB),
        ("recv_buf", "64k", 64 * KiB),
        ("recv_buf", "2M", 2 * MiB),
        ("recv_buf", "1MB", 10**6),
        ("recv_buf", "1 kb", 1000),
        ("recv_buf", "4 mib", 4 * MiB),
        ("recv_buf", "1.5MiB", 3 * MiB // 2),
        ("recv_buf", "0.5k", 512),
        ("recv_buf", "65536", 65536),
        ("recv_buf", "1_048_576", MiB),
        ("recv_buf", "100B", 100),
        ("recv_buf", " 8MiB ", 8 * MiB),
        ("recv_buf", "none", None),
        ("send_buf", "NULL", None),
        ("send_buf", "", None),
        ("udp_gso_segment", "1472", 1472),
        ("busy_poll", "50us", 50),
        ("busy_poll", "50µs", 50),
        ("busy_poll", "50μs", 50),  # Greek mu, not the micro sign
        ("busy_poll", "50", 50),
        ("busy_poll", "1ms", 1000),
        ("busy_poll", "2000ns", 2),
        ("busy_poll", "0.5s", 500_000),
        ("busy_poll", "0.05ms", 50),
        ("spin_budget", "1s", 1_000_000),
        ("poll_timeout", "0.5s", 0.5),
        ("poll_timeout", "250ms", 0.25),
        ("poll_timeout", "50us", 5e-05),
        ("poll_timeout", "1500ns", 1.5e-06),
        ("poll_timeout", "2", 2.0),
        ("poll_timeout", "1e-3", 0.001),
        ("poll_timeout", "none", None),
        ("tos", "16", 16),
        ("tos", "0x10", 16),
        ("ttl", "64", 64),
        ("tcp_nodelay", "true", True),
        ("tcp_nodelay", "No", False),
        ("tcp_nodelay", "ON", True),
        ("tcp_nodelay", "off", False),
        ("tcp_nodelay", "1", True),
        ("tcp_nodelay", "0", False),
        ("tcp_nodelay", "yes", True),
        ("ipv6_only", "none", None),
        ("ipv6_only", "false", False),
        ("best_effort", "tos, busy-poll,TTL", frozenset({"tos", "busy_poll", "ttl"})),
        ("best_effort", "", frozenset()),
        ("best_effort", ["TOS", "busy-poll"], frozenset({"tos", "busy_poll"})),
    ],
)
def test_unit_parsing(field: str, text: object, expected: object) -> None:
    value = getattr(NetConfig.from_mapping({field: text}), field)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("field", "text", "message"),
    [
        ("recv_buf", "4XB", "a size such as 4MiB"),
        ("recv_buf", "4ms", "a size such as 4MiB"),
        ("recv_buf", "MiB", "a size such as 4MiB"),
        ("recv_buf", "1.5", "a whole number of bytes"),
        ("recv_buf", "2GiB", "from 1 to 1 GiB"),
        ("recv_buf", "-4MiB", "from 1 to 1 GiB"),
        ("recv_buf", "1e99999", "a size such as 4MiB"),
        ("recv_buf", "9" * 5000, "a size such as 4MiB"),
        ("busy_poll", "1500ns", "a whole number of microseconds (1500ns is 1.5µs)"),
        ("busy_poll", "2m", "a duration such as 50us"),
        ("busy_poll", "5 minutes", "a duration such as 50us"),
        ("busy_poll", "4KiB", "a duration such as 50us"),
        ("spin_budget", "2s", "from 0 to 1_000_000"),
        ("poll_timeout", "-1s", "0 or a number of seconds from 1e-9"),
        ("poll_timeout", "1e400s", "a duration such as 0.5s"),
        ("poll_timeout", "inf", "a duration such as 0.5s"),
        ("poll_timeout", "nan", "a duration such as 0.5s"),
        ("tos", "loud", "an integer such as 16 or 0x10"),
        ("tos", "0x100", "from 0 to 255"),
        ("tos", "16.0", "an integer such as 16 or 0x10"),
        ("tcp_backlog", "none", "an integer such as 16 or 0x10"),
        ("tcp_nodelay", "maybe", "true/false, yes/no, on/off or 1/0"),
        ("tcp_nodelay", "none", "true/false, yes/no, on/off or 1/0"),
        ("tcp_nodelay", 1, "True or False"),
        ("ipv6_only", "2", "true/false, yes/no, on/off or 1/0, or none"),
        ("best_effort", "tos, recv_buff", "unknown: 'recv_buff' (did you mean 'recv_buf'?)"),
        ("best_effort", 7, "got int"),
    ],
)
def test_bad_units_are_named_with_what_is_allowed(field: str, text: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        NetConfig.from_mapping({field: text})
    (problem,) = info.value.problems
    assert problem.field == field
    assert problem.value == text, "the problem shows what the user wrote"
    assert message in problem.allowed


@given(
    st.integers(1, 2**30 // KiB),
    st.sampled_from([("KiB", KiB), ("k", KiB), ("kb", 1000), ("", 1)]),
)
def test_size_units_are_exact(count: int, unit: tuple[str, int]) -> None:
    suffix, factor = unit
    assert NetConfig.from_mapping({"send_buf": f"{count}{suffix}"}).send_buf == count * factor


@given(st.integers(0, 1_000_000))
def test_duration_units_convert_to_the_field_unit(micros: int) -> None:
    by_unit = NetConfig.from_mapping({"spin_budget": f"{micros * 1000}ns"})
    assert by_unit.spin_budget == micros
    timeout = NetConfig.from_mapping({"poll_timeout": f"{micros}us"}).poll_timeout
    assert timeout == micros / 1_000_000


def test_keys_are_normalized() -> None:
    config = NetConfig.from_mapping({"RECV-BUF": "2MiB", "Tcp_NoDelay": False, "hop-limit": 3})
    assert (config.recv_buf, config.tcp_nodelay, config.hop_limit) == (2 * MiB, False, 3)


def test_native_values_are_validated_like_the_constructor() -> None:
    config = NetConfig.from_mapping({"tos": 16, "poll_timeout": 0.5, "best_effort": ["tos"]})
    assert (config.tos, config.poll_timeout, config.best_effort) == (16, 0.5, frozenset({"tos"}))
    with pytest.raises(ConfigError) as info:
        NetConfig.from_mapping({"tos": True, "recv_buf": 1.0, "ipv6_only": 1})
    assert info.value.fields == ("recv_buf", "tos", "ipv6_only")


def test_unknown_keys_are_named_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        NetConfig.from_mapping({"recv_buff": "4MiB", "tcp-no-delay": True, "zzz": 1})
    problems = {p.field: p.allowed for p in info.value.problems}
    assert problems["recv_buff"] == "a NetConfig field name (did you mean 'recv_buf'?)"
    assert problems["tcp-no-delay"].endswith("(did you mean 'tcp_nodelay'?)")
    assert problems["zzz"] == "a NetConfig field name"


def test_from_mapping_collects_every_problem_in_one_error() -> None:
    mapping: Mapping[str, object] = {
        "recv_buff": "4MiB",
        "send_buf": "lots",
        "tos": "300",
        "tcp_nodelay": "maybe",
        "best_effort": "tos,nope",
        "ttl": "64",
        "TTL": "65",
    }
    with pytest.raises(ConfigError) as info:
        NetConfig.from_mapping(mapping)
    assert sorted(info.value.fields) == sorted(
        ["recv_buff", "send_buf", "tos", "tcp_nodelay", "best_effort", "ttl"]
    )
    by_field = {p.field: p for p in info.value.problems}
    assert by_field["tos"].value == "300"
    assert by_field["ttl"].allowed == "one key per field, not both 'ttl' and 'TTL'"


def test_from_mapping_starts_from_base() -> None:
    base = NetConfig.low_latency()
    config = NetConfig.from_mapping({"ttl": "32"}, base=base)
    assert config == attrs.evolve(base, ttl=32)
    assert NetConfig.from_mapping({}) == NetConfig()
    assert NetConfig.from_mapping({"recv_buf": "none"}, base=base).recv_buf is None


def test_from_mapping_rejects_non_str_keys() -> None:
    with pytest.raises(ConfigError) as info:
        NetConfig.from_mapping({1: "x"})  # type: ignore[dict-item]
    assert info.value.fields == ("1",)


# -- from_env ------------------------------------------------------------------------------------


def test_from_env_picks_prefixed_variables() -> None:
    env = {
        "HORIZON_RECV_BUF": "4MiB",
        "HORIZON_BUSY_POLL": "50us",
        "HORIZON_BEST_EFFORT": "busy_poll",
        "HORIZON_POLL_TIMEOUT": "10ms",
        "PATH": "/usr/bin",
        "RECV_BUF": "1",
    }
    config = NetConfig.from_env(env)
    assert config == NetConfig(
        recv_buf=4 * MiB, busy_poll=50, best_effort={"busy_poll"}, poll_timeout=0.01
    )


def test_from_env_custom_prefix_and_base() -> None:
    env = {"APP_NET_TTL": "7", "HORIZON_TTL": "not read", "APP_NET_TCP_NODELAY": "off"}
    config = NetConfig.from_env(env, prefix="APP_NET_", base=NetConfig.high_throughput())
    assert config == attrs.evolve(NetConfig.high_throughput(), ttl=7, tcp_nodelay=False)


def test_from_env_unknown_prefixed_keys_are_errors() -> None:
    env = {"HORIZON_RECV_BUFF": "4MiB", "HORIZON_TOS": "999", "HORIZON_WHATEVER": "1"}
    with pytest.raises(ConfigError) as info:
        NetConfig.from_env(env)
    problems = {p.field: p for p in info.value.problems}
    assert set(problems) == {"HORIZON_RECV_BUFF", "HORIZON_WHATEVER", "tos"}
    assert problems["HORIZON_RECV_BUFF"].allowed.endswith("(did you mean HORIZON_RECV_BUF?)")
    assert problems["tos"].value == "999"


def test_zerocopy_threshold_is_a_byte_count_or_none() -> None:
    assert NetConfig().zerocopy_threshold is None
    for good in (1, 16 * KiB, 2**30):
        assert NetConfig(zerocopy_threshold=good).zerocopy_threshold == good
    for bad in (0, -1, 2**30 + 1, True, 1.5, "64KiB"):
        assert rejected_fields(zerocopy_threshold=bad) == ("zerocopy_threshold",), bad
    with pytest.raises(ConfigError, match=r"zerocopy_threshold.*1 to 1 GiB.*SO_ZEROCOPY"):
        NetConfig(zerocopy_threshold=0)
    assert NetConfig.from_mapping({"zerocopy-threshold": "64KiB"}).zerocopy_threshold == 64 * KiB
    assert NetConfig.from_mapping({"zerocopy_threshold": "none"}).zerocopy_threshold is None
