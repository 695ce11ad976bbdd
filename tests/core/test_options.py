"""The socket-option plan and report: the rules swept by hypothesis, the kernel quirks by example.

Expectations here are written independently of ``horizon_core.options``' rule table: what the
kernel does without being told, which platforms and socket kinds have which option.
"""

from __future__ import annotations

import errno
import json
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from horizon_core.config import MiB, NetConfig
from horizon_core.errors import OptionError
from horizon_core.options import (
    OPTION_FIELDS,
    OPTION_NAMES,
    Family,
    Feature,
    KernelLimits,
    Level,
    Necessity,
    Observation,
    OptionOutcome,
    OptionPlan,
    OptionReport,
    OptionSetting,
    OptionStatus,
    Phase,
    Platform,
    SkippedOption,
    SocketKind,
    build_report,
    plan_options,
)

# -- strategies (horizon_core.strategies is written separately; this file needs only a few) ----

NON_OPTION_FIELDS = frozenset(
    {"tcp_backlog", "poll_timeout", "spin_budget", "udp_gso_batch", "best_effort"}
)
SETTING_NAMES = sorted(f.name for f in attrs.fields(NetConfig) if f.name != "best_effort")


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | values


FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "tcp_nodelay": st.booleans(),
    "tcp_quickack": st.booleans(),
    "reuse_port": st.booleans(),
    "reuse_addr": st.booleans(),
    "busy_poll": _maybe(st.integers(0, 2**31 - 1)),
    "busy_poll_budget": _maybe(st.integers(1, 65535)),
    "prefer_busy_poll": st.booleans(),
    "recv_buf": _maybe(st.integers(1, 2**30)),
    "send_buf": _maybe(st.integers(1, 2**30)),
    "tos": _maybe(st.integers(0, 255)),
    "ttl": _maybe(st.integers(1, 255)),
    "ipv6_only": _maybe(st.booleans()),
    "hop_limit": _maybe(st.integers(1, 255)),
    "tcp_backlog": st.integers(0, 65535),
    "udp_gso_segment": _maybe(st.integers(1, 65507)),
    "udp_gro": st.booleans(),
    "rx_drop_counter": st.booleans(),
    "poll_timeout": _maybe(st.one_of(st.just(0.0), st.floats(1e-9, 10))),
    "spin_budget": _maybe(st.integers(0, 1_000_000)),
    "best_effort": st.frozensets(st.sampled_from(SETTING_NAMES)),
}

bases = st.sampled_from(
    [NetConfig(), NetConfig.low_latency(), NetConfig.high_throughput(), NetConfig.power_efficient()]
)
configs = st.builds(
    lambda base, changes: attrs.evolve(base, **changes),
    bases,
    st.fixed_dictionaries({}, optional=FIELD_VALUES),
)
families = st.sampled_from(Family)
kinds = st.sampled_from(SocketKind)
platforms = st.sampled_from(Platform)
sockets = st.tuples(configs, families, kinds, platforms)

# What a socket does when nobody sets the option: a bool equal to this asks for nothing.
KERNEL_DEFAULT = {
    "reuse_addr": False,
    "reuse_port": False,
    "tcp_nodelay": False,
    "tcp_quickack": False,
    "prefer_busy_poll": False,
    "rx_drop_counter": False,
    "udp_gro": False,
}
ALL_PLATFORMS = frozenset(Platform)
BOUND = frozenset({SocketKind.UDP, SocketKind.TCP_LISTENER})
TCP = frozenset({SocketKind.TCP_LISTENER, SocketKind.TCP_STREAM})
# field -> (option, platforms that have it, socket kinds it is for)
BOOL_OPTIONS = {
    "reuse_addr": ("SO_REUSEADDR", ALL_PLATFORMS, BOUND),
    "reuse_port": ("SO_REUSEPORT", ALL_PLATFORMS - {Platform.WINDOWS}, BOUND),
    "tcp_nodelay": ("TCP_NODELAY", ALL_PLATFORMS, TCP),
    "tcp_quickack": ("TCP_QUICKACK", {Platform.LINUX}, TCP),
    "prefer_busy_poll": ("SO_PREFER_BUSY_POLL", {Platform.LINUX}, frozenset(SocketKind)),
    "rx_drop_counter": ("SO_RXQ_OVFL", {Platform.LINUX}, {SocketKind.UDP}),
    "udp_gro": ("UDP_GRO", {Platform.LINUX}, {SocketKind.UDP}),
}
FORCED = {"SO_RCVBUFFORCE": "SO_RCVBUF", "SO_SNDBUFFORCE": "SO_SNDBUF"}


def asks(config: NetConfig, field: str) -> bool:
    value = getattr(config, field)
    if value is None:
        return False
    return field not in KERNEL_DEFAULT or value != KERNEL_DEFAULT[field]


def plan_of(sock: tuple[NetConfig, Family, SocketKind, Platform]) -> OptionPlan:
    return plan_options(*sock)


def setting(plan: OptionPlan, name: str) -> OptionSetting:
    matches = [s for s in plan.settings if s.name == name]
    assert len(matches) == 1, f"{name} planned {len(matches)} times: {plan.settings}"
    return matches[0]


def perfect(plan: OptionPlan) -> dict[str, Observation]:
    """Observations of a kernel that did exactly as asked."""
    return {s.name: Observation(s.name, effective=s.value) for s in plan.settings}


def linux_udp(config: NetConfig | None = None, family: Family = Family.IPV4) -> OptionPlan:
    return plan_options(config or NetConfig(), family, SocketKind.UDP, Platform.LINUX)


# -- planning ------------------------------------------------------------------------------


def test_option_fields_and_runtime_fields_partition_netconfig() -> None:
    fields = {f.name for f in attrs.fields(NetConfig)}
    assert set(OPTION_FIELDS) | NON_OPTION_FIELDS == fields
    assert not set(OPTION_FIELDS) & NON_OPTION_FIELDS
    assert len(set(OPTION_NAMES)) == len(OPTION_NAMES)


@given(sockets)
def test_every_asking_field_is_planned_or_skipped_never_silent(sock: Any) -> None:
    config = sock[0]
    plan = plan_of(sock)
    planned = {s.field for s in plan.settings}
    skipped = {k.field for k in plan.skipped}
    for field in OPTION_FIELDS:
        if asks(config, field):
            assert field in planned | skipped, f"{field}={getattr(config, field)!r} vanished"
        if getattr(config, field) is None:
            assert field not in planned | skipped
    assert skipped <= {f for f in OPTION_FIELDS if asks(config, f)}, "a skip nobody asked for"
    assert not planned & skipped
    assert not (planned | skipped) & NON_OPTION_FIELDS
    assert len(skipped) == len(plan.skipped), "one skip per field"
    for s in plan.settings:
        assert s.name in OPTION_NAMES
        assert s.fallback is None or s.fallback.name in OPTION_NAMES
        assert type(s.value) is int
    for k in plan.skipped:
        assert k.name in OPTION_NAMES
        assert k.reason


@given(sockets)
def test_bool_fields_are_planned_as_0_or_1_wherever_the_socket_has_the_option(sock: Any) -> None:
    config, _, kind, platform = sock
    plan = plan_of(sock)
    for field, (name, where, for_kinds) in BOOL_OPTIONS.items():
        value = getattr(config, field)
        if platform in where and kind in for_kinds:
            assert setting(plan, name).value == int(value)
        else:
            assert name not in {s.name for s in plan.settings}
            skips = [k for k in plan.skipped if k.field == field]
            assert bool(skips) == (value is True), f"{field}={value} on {platform} {kind}"
            if kind not in for_kinds:
                assert all(k.reason.startswith("not for ") for k in skips)
            elif skips:
                assert skips[0].reason.startswith("not on this platform")


@given(sockets)
def test_ipv6_options_only_on_ipv6_and_ip_options_follow_the_family(sock: Any) -> None:
    config, family, _, platform = sock
    plan = plan_of(sock)
    names = {s.name for s in plan.settings}
    if family is Family.IPV4:
        assert not any(s.level is Level.IPV6 or s.name.startswith("IPV6_") for s in plan.settings)
        for field in ("hop_limit", "ipv6_only"):
            if getattr(config, field) is not None:
                (skip,) = (k for k in plan.skipped if k.field == field)
                assert skip.reason == "IPv4 socket"
                assert skip.necessity is Necessity.BEST_EFFORT
        assert ("IP_TOS" in names) == (config.tos is not None)
        assert ("IP_TTL" in names) == (config.ttl is not None)
    else:
        assert "IP_TOS" not in names
        assert ("IPV6_TCLASS" in names) == (config.tos is not None)
        assert ("IPV6_UNICAST_HOPS" in names) == (config.hop_limit is not None)
        assert ("IPV6_V6ONLY" in names) == (config.ipv6_only is not None)
        dual_stack_linux = platform is Platform.LINUX and config.ipv6_only is not True
        assert ("IP_TTL" in names) == (config.ttl is not None and dual_stack_linux)
        if "IP_TTL" in names:
            assert setting(plan, "IP_TTL").necessity is Necessity.BEST_EFFORT


@given(sockets)
def test_tcp_options_never_on_udp_and_udp_options_never_on_tcp(sock: Any) -> None:
    config, _, kind, _ = sock
    plan = plan_of(sock)
    levels = {s.level for s in plan.settings}
    names = {s.name for s in plan.settings}
    if kind is SocketKind.UDP:
        assert Level.TCP not in levels
        for k in plan.skipped:
            if k.field in ("tcp_nodelay", "tcp_quickack"):
                assert k.reason == "not for UDP sockets"
    else:
        assert Level.UDP not in levels
        assert "SO_RXQ_OVFL" not in names
        if config.udp_gso_segment is not None:
            (skip,) = (k for k in plan.skipped if k.field == "udp_gso_segment")
            assert skip.reason == "not for TCP sockets"
    if kind is SocketKind.TCP_STREAM:
        assert not names & {"SO_REUSEADDR", "SO_REUSEPORT", "SO_EXCLUSIVEADDRUSE"}


@given(sockets)
def test_before_bind_settings_come_first_and_the_split_is_exact(sock: Any) -> None:
    plan = plan_of(sock)
    phases = [s.phase for s in plan.settings]
    assert phases == sorted(phases, key=lambda p: p is Phase.AFTER_BIND)
    assert plan.before_bind() + plan.after_bind() == plan.settings
    assert all(s.phase is Phase.BEFORE_BIND for s in plan.before_bind())
    names = [s.name for s in plan.settings]
    assert len(names) == len(set(names))
    assert (plan.family, plan.kind, plan.platform) == sock[1:]


@given(sockets)
def test_plans_are_deterministic(sock: Any) -> None:
    config, *rest = sock
    rebuilt = NetConfig.from_mapping(config.to_mapping())
    assert plan_of(sock) == plan_of(sock) == plan_options(rebuilt, *rest)


@given(sockets)
def test_necessity_follows_is_required(sock: Any) -> None:
    config, family, _, platform = sock
    plan = plan_of(sock)
    for s in plan.settings:
        required = Necessity.REQUIRED if config.is_required(s.field) else Necessity.BEST_EFFORT
        if s.name in FORCED:
            assert platform is Platform.LINUX
            assert s.necessity is Necessity.BEST_EFFORT
            assert s.fallback is not None
            assert s.fallback.name == FORCED[s.name]
            assert (s.fallback.value, s.fallback.necessity) == (s.value, required)
        elif (s.name == "IP_TTL" and family is Family.IPV6) or (
            s.name in ("IP_TOS", "IPV6_TCLASS") and platform is Platform.WINDOWS
        ):
            # Best-effort by the platform: IP_TTL reaches only IPv4-mapped traffic of an IPv6
            # socket; Windows accepts IP_TOS and may ignore it.
            assert s.necessity is Necessity.BEST_EFFORT
        else:
            assert s.necessity is required, s
            assert s.fallback is None
    for k in plan.skipped:
        if k.necessity is Necessity.REQUIRED:
            assert config.is_required(k.field)
            assert k.reason.startswith("not on this platform")


@given(sockets)
def test_buffers_force_on_linux_and_plain_elsewhere(sock: Any) -> None:
    config, _, _, platform = sock
    plan = plan_of(sock)
    names = {s.name for s in plan.settings}
    for field, forced, plain in (
        ("recv_buf", "SO_RCVBUFFORCE", "SO_RCVBUF"),
        ("send_buf", "SO_SNDBUFFORCE", "SO_SNDBUF"),
    ):
        value = getattr(config, field)
        if value is None:
            assert not names & {forced, plain}
        elif platform is Platform.LINUX:
            assert setting(plan, forced).value == value
            assert plain not in names
        else:
            assert setting(plan, plain).value == value
            assert forced not in names


def test_windows_has_no_reuseport_and_guards_ports_with_exclusiveaddruse() -> None:
    config = attrs.evolve(NetConfig(), reuse_addr=False)
    plan = plan_options(config, Family.IPV4, SocketKind.TCP_LISTENER, Platform.WINDOWS)
    assert setting(plan, "SO_REUSEADDR").value == 0
    assert setting(plan, "SO_EXCLUSIVEADDRUSE").value == 1
    assert setting(plan, "SO_EXCLUSIVEADDRUSE").phase is Phase.BEFORE_BIND
    (skip,) = (k for k in plan.skipped if k.field == "reuse_port")
    assert skip.reason == "not on this platform (SO_REUSEPORT does not exist on Windows)"
    # reuse_port=True is the default: its skip is reported, but it was not a requirement.
    assert skip.necessity is Necessity.BEST_EFFORT

    default = plan_options(NetConfig(), Family.IPV4, SocketKind.UDP, Platform.WINDOWS)
    assert "SO_EXCLUSIVEADDRUSE" not in {s.name for s in default.settings}
    for platform in (Platform.LINUX, Platform.DARWIN, Platform.FREEBSD):
        other = plan_options(config, Family.IPV4, SocketKind.UDP, platform)
        assert "SO_EXCLUSIVEADDRUSE" not in {s.name for s in other.settings}


def test_non_linux_platforms_skip_linux_only_options_with_the_field_necessity() -> None:
    config = attrs.evolve(
        NetConfig.low_latency(), udp_gso_segment=1200, udp_gro=True, tcp_quickack=False
    )
    for platform in (Platform.DARWIN, Platform.FREEBSD, Platform.WINDOWS):
        plan = plan_options(config, Family.IPV4, SocketKind.UDP, platform)
        skips = {k.field: k for k in plan.skipped}
        assert skips["busy_poll"].necessity is Necessity.BEST_EFFORT  # low_latency: best_effort
        assert skips["prefer_busy_poll"].reason == "not on this platform"
        assert skips["udp_gso_segment"].necessity is Necessity.REQUIRED
        assert skips["udp_gso_segment"].value == 1200
        assert skips["udp_gro"].value == 1
        # tcp_quickack=False is what the kernel does anyway: nothing asked, nothing listed.
        assert "tcp_quickack" not in skips
        # A skip is reported, never raised, even for a required field.
        report = build_report(plan, perfect(plan), KernelLimits())
        assert report["udp_gso_segment"].status is OptionStatus.SKIPPED
        report.raise_for_required()


def test_ttl_on_ipv6_is_linux_dual_stack_only() -> None:
    v6only = attrs.evolve(NetConfig(), ttl=9, ipv6_only=True)
    plan = plan_options(v6only, Family.IPV6, SocketKind.UDP, Platform.LINUX)
    (skip,) = (k for k in plan.skipped if k.field == "ttl")
    assert skip.reason.startswith("IPv6-only socket")
    plan = plan_options(
        attrs.evolve(v6only, ipv6_only=None), Family.IPV6, SocketKind.UDP, Platform.DARWIN
    )
    (skip,) = (k for k in plan.skipped if k.field == "ttl")
    assert skip.reason.startswith("not on this platform")
    assert skip.necessity is Necessity.BEST_EFFORT


def test_accepted_and_connected_streams_share_the_tcp_stream_plan() -> None:
    plan = plan_options(NetConfig(), Family.IPV4, SocketKind.TCP_STREAM, Platform.LINUX)
    assert setting(plan, "TCP_NODELAY").phase is Phase.BEFORE_BIND
    quickack = setting(plan, "TCP_QUICKACK")
    assert (quickack.phase, quickack.readback) == (Phase.AFTER_BIND, False)
    assert {"SO_RCVBUFFORCE", "SO_SNDBUFFORCE"} <= {s.name for s in plan.before_bind()}


def test_every_option_name_is_reachable() -> None:
    config = attrs.evolve(
        NetConfig.low_latency(),
        reuse_addr=False,
        ttl=64,
        hop_limit=64,
        ipv6_only=False,
        udp_gso_segment=1200,
        zerocopy_threshold=65536,
    )
    seen: set[str] = set()
    for family in Family:
        for kind in SocketKind:
            for platform in Platform:
                for cfg in (config, NetConfig()):
                    plan = plan_options(cfg, family, kind, platform, features=frozenset(Feature))
                    seen |= {s.name for s in plan.settings}
                    seen |= {s.fallback.name for s in plan.settings if s.fallback}
    assert seen == set(OPTION_NAMES)


@pytest.mark.parametrize(
    ("value", "platform"),
    [
        ("linux", Platform.LINUX),
        ("linux2", Platform.LINUX),
        ("win32", Platform.WINDOWS),
        ("darwin", Platform.DARWIN),
        ("freebsd14", Platform.FREEBSD),
    ],
)
def test_platform_from_sys_platform(value: str, platform: Platform) -> None:
    assert Platform.from_sys_platform(value) is platform


@pytest.mark.parametrize("value", ["cygwin", "sunos5", "", "aix"])
def test_platform_from_sys_platform_rejects_unknown(value: str) -> None:
    with pytest.raises(ValueError, match=repr(value).replace("(", r"\(")):
        Platform.from_sys_platform(value)


def test_plan_rejects_misordered_or_duplicate_settings() -> None:
    before = OptionSetting("ttl", Level.IP, "IP_TTL", 9, Phase.BEFORE_BIND, Necessity.REQUIRED)
    after = attrs.evolve(before, field="tcp_quickack", name="TCP_QUICKACK", phase=Phase.AFTER_BIND)
    OptionPlan(Family.IPV4, SocketKind.TCP_STREAM, Platform.LINUX, (before, after))
    with pytest.raises(ValueError, match="BEFORE_BIND"):
        OptionPlan(Family.IPV4, SocketKind.TCP_STREAM, Platform.LINUX, (after, before))
    with pytest.raises(ValueError, match="IP_TTL"):
        OptionPlan(Family.IPV4, SocketKind.UDP, Platform.LINUX, (before, before))


# -- the report ----------------------------------------------------------------------------

RMEM = 212992


def test_report_doubled_buffer_is_adjusted() -> None:
    plan = linux_udp()
    observed = perfect(plan)
    observed["SO_RCVBUFFORCE"] = Observation("SO_RCVBUFFORCE", effective=2 * MiB)
    report = build_report(plan, observed, KernelLimits(RMEM, RMEM))
    outcome = report["recv_buf"]
    assert (outcome.name, outcome.requested, outcome.effective) == ("SO_RCVBUFFORCE", MiB, 2 * MiB)
    assert outcome.status is OptionStatus.ADJUSTED
    assert outcome.reason == "doubled by the kernel (socket(7): bookkeeping overhead)"
    assert outcome.necessity is Necessity.BEST_EFFORT


def test_report_clamped_buffer_after_fallback() -> None:
    config = attrs.evolve(NetConfig(), recv_buf=8 * MiB)  # required: differs from the default
    plan = linux_udp(config)
    observed = perfect(plan)
    observed["SO_RCVBUFFORCE"] = Observation(
        "SO_RCVBUFFORCE", effective=2 * RMEM, used_fallback=True
    )
    report = build_report(plan, observed, KernelLimits(rmem_max=RMEM))
    outcome = report["recv_buf"]
    assert outcome is report["SO_RCVBUF"] is report["SO_RCVBUFFORCE"]
    assert outcome.name == "SO_RCVBUF"
    assert outcome.status is OptionStatus.ADJUSTED
    assert outcome.reason.startswith(f"clamped to net.core.rmem_max={RMEM}, then doubled")
    assert "SO_RCVBUFFORCE refused" in outcome.reason
    assert outcome.necessity is Necessity.REQUIRED  # the fallback carries the field's necessity
    report.raise_for_required()  # adjusted is not refused


def test_report_buffer_edge_cases() -> None:
    config = attrs.evolve(NetConfig(), recv_buf=2**30, send_buf=1)
    plan = linux_udp(config)
    observed = perfect(plan)
    observed["SO_RCVBUFFORCE"] = Observation("SO_RCVBUFFORCE", effective=2**31 - 2)
    observed["SO_SNDBUFFORCE"] = Observation("SO_SNDBUFFORCE", effective=4608)
    report = build_report(plan, observed, KernelLimits())
    assert report["recv_buf"].reason.startswith("capped at INT_MAX/2")
    assert report["send_buf"].reason.startswith("raised to the kernel's minimum")
    # Outside Linux a buffer reads back as set; any difference is reported plainly.
    plan = plan_options(config, Family.IPV4, SocketKind.UDP, Platform.DARWIN)
    observed = perfect(plan)
    observed["SO_RCVBUF"] = Observation("SO_RCVBUF", effective=2**29)
    report = build_report(plan, observed, KernelLimits())
    assert (report["SO_RCVBUF"].status, report["SO_RCVBUF"].reason) == (
        OptionStatus.ADJUSTED,
        f"the kernel set {2**29}",
    )
    assert report["SO_SNDBUF"].status is OptionStatus.APPLIED


@pytest.mark.parametrize("err", [errno.EPERM, errno.EACCES])
def test_report_eperm_is_refused_and_raises_when_required(err: int) -> None:
    plan = linux_udp(NetConfig(busy_poll=50))
    observed = perfect(plan)
    observed["SO_BUSY_POLL"] = Observation("SO_BUSY_POLL", error=err)
    report = build_report(plan, observed, KernelLimits())
    outcome = report["SO_BUSY_POLL"]
    assert (outcome.status, outcome.reason) == (
        OptionStatus.REFUSED,
        "not permitted (needs CAP_NET_ADMIN)",
    )
    assert (outcome.error, outcome.effective, outcome.necessity) == (err, None, Necessity.REQUIRED)
    assert report.refused_required() == (outcome,)
    with pytest.raises(OptionError) as info:
        report.raise_for_required()
    assert (info.value.field, info.value.option, info.value.errno) == (
        "busy_poll",
        "SO_BUSY_POLL",
        err,
    )


def test_report_refusal_of_best_effort_setting_does_not_raise() -> None:
    plan = linux_udp(NetConfig.low_latency())
    observed = perfect(plan)
    for name in ("SO_BUSY_POLL", "SO_BUSY_POLL_BUDGET", "SO_PREFER_BUSY_POLL"):
        observed[name] = Observation(name, error=errno.EPERM)
    report = build_report(plan, observed, KernelLimits())
    assert report["prefer_busy_poll"].status is OptionStatus.REFUSED
    assert report.refused_required() == ()
    report.raise_for_required()


@pytest.mark.parametrize("err", [errno.ENOPROTOOPT, errno.EINVAL, errno.EOPNOTSUPP])
def test_report_unknown_option_is_unsupported_not_raised(err: int) -> None:
    plan = linux_udp(NetConfig(udp_gso_segment=1200))
    observed = perfect(plan)
    observed["UDP_SEGMENT"] = Observation("UDP_SEGMENT", error=err)
    report = build_report(plan, observed, KernelLimits())
    outcome = report["udp_gso_segment"]
    assert (outcome.status, outcome.reason) == (
        OptionStatus.UNSUPPORTED,
        "not supported by this kernel",
    )
    assert outcome.necessity is Necessity.REQUIRED
    report.raise_for_required()


def test_report_other_errnos_are_refusals_named_by_errno() -> None:
    plan = plan_options(NetConfig(ttl=9), Family.IPV4, SocketKind.UDP, Platform.DARWIN)
    observed = perfect(plan)
    observed["IP_TTL"] = Observation("IP_TTL", error=errno.EBADF)
    observed["SO_RCVBUF"] = Observation("SO_RCVBUF", error=errno.ENOBUFS)
    report = build_report(plan, observed, KernelLimits())
    assert report["ttl"].status is OptionStatus.REFUSED
    assert report["ttl"].reason == "setsockopt failed (EBADF)"
    assert report["recv_buf"].reason.startswith("exceeds the system's socket buffer limit")
    renamed = build_report(plan, observed, KernelLimits(), errno_names={errno.EBADF: "BADF!"})
    assert renamed["ttl"].reason == "setsockopt failed (BADF!)"
    # EPERM outside Linux is not about CAP_NET_ADMIN.
    observed["IP_TTL"] = Observation("IP_TTL", error=errno.EPERM)
    assert build_report(plan, observed, KernelLimits())["ttl"].reason == "not permitted"


def test_report_skipped_entries_carry_the_plan_reason() -> None:
    plan = linux_udp(NetConfig(hop_limit=7))
    report = build_report(plan, perfect(plan), KernelLimits())
    hop = report["hop_limit"]
    assert (hop.name, hop.status, hop.reason, hop.requested, hop.effective) == (
        "IPV6_UNICAST_HOPS",
        OptionStatus.SKIPPED,
        "IPv4 socket",
        7,
        None,
    )
    assert len(report) == len(plan.settings) + len(plan.skipped)
    assert [o.name for o in report][: len(plan.settings)] == [s.name for s in plan.settings]


def test_report_readback_rules() -> None:
    plan = plan_options(NetConfig(tos=0x12), Family.IPV4, SocketKind.TCP_STREAM, Platform.LINUX)
    observed = perfect(plan)
    # tcp(7): quickack is not permanent; whatever reads back says nothing about the setting.
    observed["TCP_QUICKACK"] = Observation("TCP_QUICKACK", effective=0)
    # ip(7): Linux keeps its own ECN bits in the TOS of TCP sockets.
    observed["IP_TOS"] = Observation("IP_TOS", effective=0x10)
    observed["TCP_NODELAY"] = Observation("TCP_NODELAY")  # not read back at all
    report = build_report(plan, observed, KernelLimits())
    assert (report["TCP_QUICKACK"].status, report["TCP_QUICKACK"].reason) == (
        OptionStatus.APPLIED,
        "set (not readable)",
    )
    assert report["TCP_QUICKACK"].effective is None
    assert (report["tos"].status, report["tos"].reason) == (
        OptionStatus.ADJUSTED,
        "ECN bits are managed by the kernel",
    )
    assert report["TCP_NODELAY"].reason == "set (not read back)"
    observed["IP_TOS"] = Observation("IP_TOS", effective=0x20)
    assert build_report(plan, observed, KernelLimits())["tos"].reason == "the kernel set 32"


def test_report_bsd_toggles_read_back_as_flag_bits() -> None:
    plan = plan_options(NetConfig(), Family.IPV4, SocketKind.TCP_LISTENER, Platform.DARWIN)
    observed = perfect(plan)
    observed["SO_REUSEPORT"] = Observation("SO_REUSEPORT", effective=0x200)
    observed["TCP_NODELAY"] = Observation("TCP_NODELAY", effective=4)
    observed["SO_REUSEADDR"] = Observation("SO_REUSEADDR", effective=0)
    report = build_report(plan, observed, KernelLimits())
    assert report["SO_REUSEPORT"].status is OptionStatus.APPLIED
    assert report["TCP_NODELAY"].status is OptionStatus.APPLIED
    assert report["SO_REUSEADDR"].status is OptionStatus.ADJUSTED


def test_report_windows_tos_is_best_effort_with_a_note() -> None:
    plan = plan_options(NetConfig(tos=0x10), Family.IPV4, SocketKind.UDP, Platform.WINDOWS)
    report = build_report(plan, perfect(plan), KernelLimits())
    assert report["tos"].necessity is Necessity.BEST_EFFORT
    assert report["tos"].status is OptionStatus.APPLIED
    assert "Windows may ignore IP_TOS; use QoS2" in report["tos"].reason


def test_report_missing_and_extra_observations_are_driver_bugs() -> None:
    plan = linux_udp()
    observed = perfect(plan)
    del observed["SO_RXQ_OVFL"]
    with pytest.raises(ValueError, match="SO_RXQ_OVFL"):
        build_report(plan, observed, KernelLimits())
    observed = perfect(plan) | {"TCP_NODELAY": Observation("TCP_NODELAY", effective=1)}
    with pytest.raises(ValueError, match="TCP_NODELAY"):
        build_report(plan, observed, KernelLimits())
    observed = perfect(plan) | {"SO_RCVBUF": Observation("SO_RCVBUF", effective=1)}
    with pytest.raises(ValueError, match="used_fallback=True"):
        build_report(plan, observed, KernelLimits())


def test_report_fallback_misuse_is_a_driver_bug() -> None:
    plan = linux_udp()
    observed = perfect(plan)
    observed["SO_RCVBUFFORCE"] = Observation("SO_RCVBUFFORCE", error=errno.EPERM)
    with pytest.raises(ValueError, match="fallback SO_RCVBUF was not tried"):
        build_report(plan, observed, KernelLimits())
    observed = perfect(plan)
    observed["SO_REUSEPORT"] = Observation("SO_REUSEPORT", effective=1, used_fallback=True)
    with pytest.raises(ValueError, match="no fallback"):
        build_report(plan, observed, KernelLimits())
    observed = perfect(plan)
    observed["SO_REUSEPORT"] = Observation("SO_REUSEADDR", effective=1)
    with pytest.raises(ValueError, match="filed under"):
        build_report(plan, observed, KernelLimits())


REFUSALS = {errno.EPERM, errno.EACCES, errno.ENOBUFS, errno.EBADF}
UNSUPPORTED = {errno.ENOPROTOOPT, errno.EINVAL, errno.EOPNOTSUPP}


@given(sockets, st.data())
def test_raise_for_required_raises_exactly_for_required_refusals(sock: Any, data: Any) -> None:
    plan = plan_of(sock)
    errors = st.none() | st.sampled_from(sorted(REFUSALS | UNSUPPORTED))
    observed: dict[str, Observation] = {}
    expected: list[str] = []
    for s in plan.settings:
        target, fell_back = s, False
        if s.fallback is not None and data.draw(st.booleans()):
            target, fell_back = s.fallback, True
        err = data.draw(errors)
        if s.fallback is not None and not fell_back:
            err = None  # a refused primary always goes on to its fallback
        effective = None if err is not None else target.value
        observed[s.name] = Observation(s.name, err, effective, fell_back)
        if err in REFUSALS and target.necessity is Necessity.REQUIRED:
            expected.append(target.name)
    report = build_report(plan, observed, KernelLimits())
    assert [o.name for o in report.refused_required()] == expected
    for outcome in report:
        assert (outcome.error is not None) == (
            outcome.status in (OptionStatus.REFUSED, OptionStatus.UNSUPPORTED)
        )
    if not expected:
        report.raise_for_required()
        return
    with pytest.raises(OptionError) as info:
        report.raise_for_required()
    assert info.value.option == expected[0]
    for name in expected:
        assert name in str(info.value)


@given(sockets)
def test_a_kernel_that_obeys_gives_no_refusals(sock: Any) -> None:
    plan = plan_of(sock)
    report = build_report(plan, perfect(plan), KernelLimits())
    statuses = {o.status for o in report}
    assert statuses <= {OptionStatus.APPLIED, OptionStatus.SKIPPED}
    assert [o.status for o in report].count(OptionStatus.SKIPPED) == len(plan.skipped)
    assert len(str(report).splitlines()) == len(report)
    report.raise_for_required()


def test_report_lookup_errors_name_what_exists() -> None:
    plan = linux_udp()
    report = build_report(plan, perfect(plan), KernelLimits())
    assert "SO_REUSEPORT" in report
    assert "reuse_port" in report
    assert 3 not in report
    assert "IP_TTL" not in report
    with pytest.raises(KeyError, match="SO_REUSEPORT") as info:
        report["IP_TTL"]
    assert "reuse_port" in str(info.value)


def test_report_dict_and_table_forms() -> None:
    plan = linux_udp(NetConfig(hop_limit=7))
    report = build_report(plan, perfect(plan), KernelLimits())
    rows = json.loads(json.dumps(report.to_dict()))
    assert [row["name"] for row in rows] == [o.name for o in report]
    (hop,) = (row for row in rows if row["field"] == "hop_limit")
    assert hop == {
        "field": "hop_limit",
        "name": "IPV6_UNICAST_HOPS",
        "requested": 7,
        "effective": None,
        "status": "skipped",
        "reason": "IPv4 socket",
        "necessity": "best_effort",
        "error": None,
    }
    lines = str(report).splitlines()
    assert len(lines) == len(report)
    for line, outcome in zip(lines, report, strict=True):
        assert line.startswith(outcome.name)
        assert outcome.status.name in line
        assert outcome.reason in line
    assert str(OptionReport(())) == ""


def test_raise_for_required_names_every_refusal() -> None:
    config = NetConfig(busy_poll=50, busy_poll_budget=8, ttl=9)
    plan = linux_udp(config)
    observed = perfect(plan)
    for name in ("SO_BUSY_POLL", "SO_BUSY_POLL_BUDGET"):
        observed[name] = Observation(name, error=errno.EPERM)
    report = build_report(plan, observed, KernelLimits())
    with pytest.raises(OptionError, match="SO_BUSY_POLL_BUDGET") as info:
        report.raise_for_required()
    assert info.value.option == "SO_BUSY_POLL"
    assert "best_effort" in str(info.value)


def test_value_classes_are_frozen() -> None:
    skip = SkippedOption("ttl", "IP_TTL", "IPv6 socket")
    outcome = OptionOutcome("ttl", "IP_TTL", 1, 1, OptionStatus.APPLIED, "", Necessity.REQUIRED)
    for value in (skip, outcome, Observation("IP_TTL"), KernelLimits(), OptionReport(())):
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            value.__setattr__("field", "x")


# -- zero-copy: an option that needs a driver feature ---------------------------------------

ZEROCOPY = NetConfig(zerocopy_threshold=65536)


@pytest.mark.parametrize("kind", [SocketKind.UDP, SocketKind.TCP_STREAM])
@pytest.mark.parametrize("family", list(Family))
def test_zerocopy_is_planned_only_for_a_driver_that_implements_it(
    kind: SocketKind, family: Family
) -> None:
    plan = plan_options(ZEROCOPY, family, kind, Platform.LINUX, features=frozenset({Feature.ZEROCOPY}))
    [setting] = [s for s in plan.settings if s.field == "zerocopy_threshold"]
    assert (setting.name, setting.level, setting.value, setting.phase) == (
        "SO_ZEROCOPY", Level.SOCKET, 1, Phase.BEFORE_BIND
    )
    lacking = plan_options(ZEROCOPY, family, kind, Platform.LINUX)
    assert "zerocopy_threshold" not in [s.field for s in lacking.settings]
    [skip] = [s for s in lacking.skipped if s.field == "zerocopy_threshold"]
    assert skip.name == "SO_ZEROCOPY"
    assert skip.reason == "not supported by this driver (it does not implement zerocopy)"
    assert skip.necessity is Necessity.BEST_EFFORT


def test_zerocopy_off_asks_for_nothing_and_elsewhere_is_skipped_with_the_reason() -> None:
    native = frozenset({Feature.ZEROCOPY})
    for kind in SocketKind:
        for platform in Platform:
            plan = plan_options(NetConfig(), Family.IPV4, kind, platform, features=native)
            fields = [s.field for s in plan.settings] + [s.field for s in plan.skipped]
            assert "zerocopy_threshold" not in fields
    windows = plan_options(ZEROCOPY, Family.IPV4, SocketKind.TCP_STREAM, Platform.WINDOWS,
                           features=native)
    [skip] = [s for s in windows.skipped if s.field == "zerocopy_threshold"]
    assert skip.reason == "not on this platform (MSG_ZEROCOPY is Linux-only)"
    listener = plan_options(ZEROCOPY, Family.IPV6, SocketKind.TCP_LISTENER, Platform.LINUX,
                            features=native)
    [skip] = [s for s in listener.skipped if s.field == "zerocopy_threshold"]
    assert skip.reason == "not for TCP listeners"


def test_a_skipped_zerocopy_shows_in_the_report_and_never_raises() -> None:
    plan = plan_options(ZEROCOPY, Family.IPV4, SocketKind.UDP, Platform.LINUX)
    observed = {s.name: Observation(s.name, effective=s.value) for s in plan.settings}
    report = build_report(plan, observed, KernelLimits())
    outcome = report["zerocopy_threshold"]
    assert outcome.status is OptionStatus.SKIPPED
    assert "not supported by this driver" in outcome.reason
    report.raise_for_required()
