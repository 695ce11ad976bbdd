"""Config properties, for every driver.

* For any valid NetConfig, a socket either opens and its options read back as its OptionReport
  says (for drivers with descriptors: each reported effective value equals a fresh getsockopt), or
  the driver refuses with OptionError naming a *required* field and leaks nothing.
* Every option field the plan asked about is in the report: nothing is silently ignored.
* Accepted streams report (and have) the listener's config.
* Invalid configs and addresses are refused before any socket exists.
"""

from __future__ import annotations

import os
import socket

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from horizon_core.config import NetConfig
from horizon_core.contract import Driver
from horizon_core.errors import ConfigError, OptionError
from horizon_core.events import Interest
from horizon_core.options import (
    Family,
    Necessity,
    OptionReport,
    OptionStatus,
    SocketKind,
    plan_options,
)
from horizon_core.strategies import invalid_config_kwargs, net_configs
from horizon_drivers.opening import dual_stack_config
from horizon_drivers.sockopts import READBACK_NAMES, current_platform, option_number
from tests.contract.contract_profiles import contract_settings
from tests.contract.drivers_under_test import FAMILIES, LOOPBACK, DriverUnderTest, Net, open_fd_count

KINDS = ["udp", "udp_dual_stack", "tcp_listener", "tcp_stream"]


def check_report(
    dut: DriverUnderTest,
    report: OptionReport,
    config: NetConfig,
    family: int,
    kind: SocketKind,
    fd: int | None,
) -> None:
    """The report covers the plan, claims only what it read, and matches a fresh getsockopt."""
    plan = plan_options(
        config, Family(family), kind, dut.option_platform or current_platform(),
        features=dut.features,
    )
    planned = {s.field for s in plan.settings} | {s.field for s in plan.skipped}
    assert {o.field for o in report} == planned, "report and plan disagree on the fields"
    assert report.refused_required() == (), "a socket opened although a required option was refused"
    levels = {s.name: s.level for s in plan.settings}
    levels.update({s.fallback.name: s.fallback.level for s in plan.settings if s.fallback})
    for outcome in report:
        if outcome.status is OptionStatus.APPLIED:
            assert outcome.effective in (None, outcome.requested), outcome
        if outcome.status not in (OptionStatus.APPLIED, OptionStatus.ADJUSTED):
            continue
        if fd is None or outcome.effective is None:
            continue
        numbers = option_number(levels[outcome.name], READBACK_NAMES.get(outcome.name, outcome.name))
        assert numbers is not None, outcome
        with socket.socket(fileno=os.dup(fd)) as view:
            fresh = view.getsockopt(*numbers)
        assert fresh == outcome.effective, f"{outcome.name}: report says {outcome.effective}, kernel {fresh}"


def open_kind(net: Net, kind: str, family: int, config: NetConfig) -> list[tuple[object, SocketKind]]:
    driver: Driver = net.driver
    if kind == "udp":
        return [(net.own(driver.bind_udp(LOOPBACK[family], config)), SocketKind.UDP)]
    if kind == "udp_dual_stack":
        return [(net.own(driver.bind_udp_dual_stack(0, config)), SocketKind.UDP)]
    if kind == "tcp_listener":
        return [(net.own(driver.bind_tcp(LOOPBACK[family], config)), SocketKind.TCP_LISTENER)]
    client, server = net.tcp_pair(LOOPBACK[family], config)
    return [(client, SocketKind.TCP_STREAM), (server, SocketKind.TCP_STREAM)]


@contract_settings(examples=80)
@given(config=net_configs(), kind=st.sampled_from(KINDS), family=st.sampled_from(FAMILIES))
# Always tried: Linux makes a socket IPv6-only when it binds a specific IPv6 address
# (inet6_bind), whatever IPV6_V6ONLY said before bind.
@example(config=NetConfig(ipv6_only=False), kind="udp", family=6)
@example(config=NetConfig(ipv6_only=True), kind="udp_dual_stack", family=6)
def test_options_read_back_as_the_report_says(
    dut: DriverUnderTest, config: NetConfig, kind: str, family: int
) -> None:
    if kind == "udp_dual_stack":
        family = 6
    if family not in FAMILIES:
        return
    with dut.net() as net:
        if kind == "udp_dual_stack" and config.ipv6_only is True:
            # Dual-stack needs IPV6_V6ONLY off: a config that insists on it is refused up front.
            with pytest.raises(ConfigError):
                open_kind(net, kind, family, config)
            return
        before = open_fd_count() if dut.has_fd else None
        try:
            opened = open_kind(net, kind, family, config)
        except OptionError as exc:
            refused: OptionError | None = exc
        else:
            refused = None
        if refused is not None:
            assert config.is_required(refused.field), f"{refused.field} is best-effort but was enforced"
            if before is not None and kind != "tcp_stream":  # a pair opens a listener first
                assert open_fd_count() == before, "the refused socket leaked its descriptor"
            return
        if kind == "udp_dual_stack":
            config = dual_stack_config(config)  # what the driver was documented to apply
        for sock, socket_kind in opened:
            fd = sock.fileno() if dut.has_fd else None  # type: ignore[attr-defined]
            check_report(dut, sock.options, config, family, socket_kind, fd)  # type: ignore[attr-defined]


@contract_settings(examples=40)
@given(case=invalid_config_kwargs(), kind=st.sampled_from(KINDS))
def test_invalid_configs_are_refused_before_any_socket_exists(
    dut: DriverUnderTest, case: tuple[dict[str, object], frozenset[str]], kind: str
) -> None:
    kwargs, bad = case
    with dut.net() as net:
        before = open_fd_count() if dut.has_fd else None
        with pytest.raises(ConfigError) as info:
            open_kind(net, kind, 4, NetConfig(**kwargs))  # type: ignore[arg-type]
        assert set(info.value.fields) == bad
        assert before is None or open_fd_count() == before


BAD_ADDRESSES = [
    "localhost:80",
    "127.0.0.1",
    "127.0.0.1:65536",
    "127.0.0.1:-1",
    "[::1]",
    "::1:80",
    "",
    "999.1.1.1:80",
    ("127.0.0.1", 70000),
    ("not-an-ip", 80),
]


@contract_settings(examples=40)
@given(
    address=st.one_of(st.sampled_from(BAD_ADDRESSES), st.text(max_size=30).filter(lambda t: ":" not in t)),
    opener=st.sampled_from(["bind_udp", "bind_tcp", "connect_tcp"]),
)
def test_invalid_addresses_are_refused_before_any_socket_exists(
    dut: DriverUnderTest, address: object, opener: str
) -> None:
    with dut.net() as net:
        before = open_fd_count() if dut.has_fd else None
        with pytest.raises(ValueError):
            getattr(net.driver, opener)(address, NetConfig())
        assert before is None or open_fd_count() == before


def test_dual_stack_refuses_ipv6_only_before_any_socket_exists(dut: DriverUnderTest) -> None:
    with dut.net() as net:
        before = open_fd_count() if dut.has_fd else None
        with pytest.raises(ConfigError) as info:
            net.driver.bind_udp_dual_stack(0, NetConfig(ipv6_only=True))
        assert "ipv6_only" in info.value.fields
        assert before is None or open_fd_count() == before


_NOT_TAKEN = (OptionStatus.REFUSED, OptionStatus.UNSUPPORTED)


@pytest.mark.parametrize("family", FAMILIES)
def test_accepted_streams_get_the_listeners_config(dut: DriverUnderTest, family: int) -> None:
    config = NetConfig(tcp_nodelay=True, recv_buf=256 * 1024, tos=0x10, ipv6_only=family == 6)
    with dut.net() as net:
        listener = net.listener(LOOPBACK[family], config)
        applied = {
            o.name
            for o in listener.options
            if o.status in (OptionStatus.APPLIED, OptionStatus.ADJUSTED)
        }
        client = net.own(net.driver.connect_tcp(listener.local_address, config))
        server, _ = net.retry(listener.accept_nonblocking, listener, Interest.READABLE, "accept")
        net.own(server)
        net.until(client.finish_connect, client, Interest.WRITABLE, "connect")
        tos = "IP_TOS" if family == 4 else "IPV6_TCLASS"
        for name, requested in (("TCP_NODELAY", 1), ("recv_buf", 256 * 1024), (tos, 0x10)):
            outcome = server.options[name]
            assert outcome.requested == requested, outcome
            if outcome.necessity is Necessity.BEST_EFFORT and outcome.status in _NOT_TAKEN:
                # Where the plan makes it best-effort (TOS on Windows), a refusal is reported, not hidden.
                assert outcome.reason, outcome
                continue
            assert outcome.status in (OptionStatus.APPLIED, OptionStatus.ADJUSTED), outcome
        contradictions = [
            o for o in server.options if o.status is OptionStatus.UNSUPPORTED and o.name in applied
        ]
        assert contradictions == [], "the accepted stream calls unsupported what its listener applied"
        fd = server.fileno() if dut.has_fd else None
        check_report(dut, server.options, config, family, SocketKind.TCP_STREAM, fd)


@pytest.mark.parametrize("kind", ["udp", "tcp_stream"])
def test_zerocopy_is_applied_by_the_native_driver_and_reported_skipped_by_the_others(
    dut: DriverUnderTest, kind: str
) -> None:
    """Only a driver that makes MSG_ZEROCOPY sends and reads their completions sets SO_ZEROCOPY;
    every other driver reports the field skipped with the reason, never silently."""
    config = NetConfig(zerocopy_threshold=16384)
    with dut.net() as net:
        for sock, _ in open_kind(net, kind, 4, config):
            outcome = sock.options["zerocopy_threshold"]  # type: ignore[attr-defined]
            if dut.features:
                assert outcome.status is OptionStatus.APPLIED, outcome
                assert outcome.effective == 1
            else:
                assert outcome.status is OptionStatus.SKIPPED, outcome
                assert outcome.reason in (
                    "not supported by this driver (it does not implement zerocopy)",
                    "not on this platform (MSG_ZEROCOPY is Linux-only)",
                ), outcome
