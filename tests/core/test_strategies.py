"""The public hypothesis strategies generate what they promise, extremes included."""

from __future__ import annotations

import ast
import ipaddress
from pathlib import Path

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

import horizon_core
from horizon_core.addresses import SocketAddress
from horizon_core.config import MiB, NetConfig
from horizon_core.errors import ConfigError
from horizon_core.strategies import (
    config_mappings,
    invalid_config_kwargs,
    net_configs,
    payloads,
    socket_addresses,
)

PROPERTY = settings(max_examples=100, deadline=None)
# find() searches up to this many examples for a value the strategy promises to reach; without
# shrinking (only reaching it matters, and shrinking a whole config is the slow part).
REACH = settings(max_examples=2000, deadline=None, database=None, phases=[Phase.generate])


# -- net_configs -----------------------------------------------------------------------------


@PROPERTY
@given(net_configs())
def test_net_configs_are_valid(config: NetConfig) -> None:
    assert isinstance(config, NetConfig)
    assert NetConfig.from_mapping(config.to_mapping()) == config


@pytest.mark.parametrize(
    ("what", "condition"),
    [
        ("recv_buf None", lambda c: c.recv_buf is None),
        ("recv_buf max", lambda c: c.recv_buf == 2**30),
        ("recv_buf min", lambda c: c.recv_buf == 1),
        ("busy_poll max", lambda c: c.busy_poll == 2**31 - 1),
        ("tcp_backlog 0", lambda c: c.tcp_backlog == 0),
        ("tcp_backlog max", lambda c: c.tcp_backlog == 65535),
        ("tos 255", lambda c: c.tos == 255),
        ("ipv6_only False", lambda c: c.ipv6_only is False),
        ("poll_timeout 0", lambda c: c.poll_timeout == 0),
        ("poll_timeout set", lambda c: c.poll_timeout is not None and c.poll_timeout > 0),
        ("best_effort non-empty", lambda c: len(c.best_effort) >= 2),
        ("low_latency preset", lambda c: c == NetConfig.low_latency()),
        ("all defaults but one", lambda c: c != NetConfig() and c.recv_buf == MiB),
    ],
)
def test_net_configs_reach_none_and_extremes(what: str, condition: object) -> None:
    assert callable(condition)
    find(net_configs(), condition, settings=REACH)


# -- invalid_config_kwargs -------------------------------------------------------------------


@PROPERTY
@given(invalid_config_kwargs())
def test_each_named_field_is_invalid_on_its_own(
    case: tuple[dict[str, object], frozenset[str]],
) -> None:
    kwargs, bad = case
    assert bad
    assert bad <= set(kwargs)
    for field, value in kwargs.items():
        if field in bad:
            with pytest.raises(ConfigError) as info:
                NetConfig(**{field: value})  # type: ignore[arg-type]
            assert info.value.fields == (field,)
        else:
            NetConfig(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["tcp_backlog", "tcp_nodelay", "best_effort", "poll_timeout"])
def test_invalid_config_kwargs_reach_every_field(field: str) -> None:
    find(invalid_config_kwargs(), lambda case: case[1] == {field}, settings=REACH)


def test_invalid_config_kwargs_reach_truthy_ints_for_bools() -> None:
    find(
        invalid_config_kwargs(),
        lambda case: type(case[0].get("udp_gro")) is int,
        settings=REACH,
    )


# -- config_mappings -------------------------------------------------------------------------


@PROPERTY
@given(config_mappings())
def test_config_mappings_are_valid_and_keys_distinct(mapping: dict[str, object]) -> None:
    normalized = [key.lower().replace("-", "_") for key in mapping]
    assert len(set(normalized)) == len(normalized)
    NetConfig.from_mapping(mapping)


def test_config_mappings_use_units() -> None:
    def has_unit(mapping: dict[str, object]) -> bool:
        return any(
            isinstance(v, str) and v.endswith(("KiB", "MiB", "k", "M", "MB"))
            for v in mapping.values()
        )

    find(config_mappings(), has_unit, settings=REACH)
    find(
        config_mappings(),
        lambda m: any(isinstance(v, str) and v.endswith("us") for v in m.values()),
        settings=REACH,
    )


# -- payloads --------------------------------------------------------------------------------


@PROPERTY
@given(st.data(), st.integers(0, 70_000))
def test_payloads_respect_max_size(data: st.DataObject, max_size: int) -> None:
    payload = data.draw(payloads(max_size=max_size))
    assert isinstance(payload, bytes)
    assert len(payload) <= max_size


def test_payloads_reach_empty_and_maximum() -> None:
    # Search lengths, not payloads: a 64 KiB example is expensive to repr.
    find(payloads().map(len), lambda n: n == 0, settings=REACH)
    find(payloads().map(len), lambda n: n == 65507, settings=REACH)
    find(payloads(max_size=9000).map(len), lambda n: 1500 < n < 9000, settings=REACH)


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_payloads_rejects_bad_max_size(bad: object) -> None:
    with pytest.raises(ValueError, match="max_size"):
        payloads(max_size=bad)  # type: ignore[arg-type]


# -- socket_addresses ------------------------------------------------------------------------


@PROPERTY
@given(st.sampled_from([4, 6, None]), st.data())
def test_socket_addresses_family(family: int | None, data: st.DataObject) -> None:
    addr = data.draw(socket_addresses(family))
    assert isinstance(addr, SocketAddress)
    if family is not None:
        assert addr.family == family
    buf = bytearray(32)
    addr.pack_into(buf, 0)
    assert SocketAddress.unpack_from(buf, 0) == addr


def test_socket_addresses_reach_mapped_scoped_and_extreme_ports() -> None:
    find(socket_addresses(6), lambda a: a.is_v4_mapped, settings=REACH)
    find(socket_addresses(6), lambda a: a.scope_id != 0 and a.flowinfo != 0, settings=REACH)
    find(socket_addresses(), lambda a: a.port == 65535, settings=REACH)
    find(socket_addresses(), lambda a: a.host == ipaddress.ip_address("0.0.0.0"), settings=REACH)


def test_socket_addresses_rejects_unknown_family() -> None:
    with pytest.raises(ValueError, match="family"):
        socket_addresses(5)


# -- the layer rule ----------------------------------------------------------------------------


def test_only_strategies_imports_hypothesis() -> None:
    root = Path(next(iter(horizon_core.__path__)))
    offenders = []
    for path in sorted(root.glob("*.py")):
        if path.name == "strategies.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(name.split(".")[0] == "hypothesis" for name in names):
                offenders.append(path.name)
    assert offenders == []
