"""The shared option plumbing: numbers, applying settings (fake and real sockets), kernel limits."""

from __future__ import annotations

import errno
import socket
import sys
from pathlib import Path

import pytest

from horizon_core.config import NetConfig
from horizon_core.options import (
    OPTION_NAMES,
    Family,
    KernelLimits,
    Level,
    Necessity,
    OptionSetting,
    OptionStatus,
    Phase,
    Platform,
    SocketKind,
    build_report,
    plan_options,
)
from horizon_drivers import sockopts
from horizon_drivers.sockopts import (
    LINUX_OPTION_NUMBERS,
    OPTION_NUMBERS,
    apply_setting,
    apply_settings,
    current_platform,
    option_number,
    read_kernel_limits,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux numbers")


class FakeSocket:
    """Records setsockopt calls; refuses the options in ``refuse`` with the given errno."""

    def __init__(self, refuse: dict[int, int] | None = None, unreadable: set[int] | None = None):
        self.refuse = refuse or {}
        self.unreadable = unreadable or set()
        self.values: dict[tuple[int, int], int] = {}
        self.calls: list[tuple[int, int, int]] = []

    def setsockopt(self, level: int, optname: int, value: int, /) -> None:
        self.calls.append((level, optname, value))
        if optname in self.refuse:
            raise OSError(self.refuse[optname], "refused")
        self.values[(level, optname)] = value

    def getsockopt(self, level: int, optname: int, /) -> int:
        if optname in self.unreadable:
            raise OSError(errno.ENOPROTOOPT, "unreadable")
        return self.values.get((level, optname), 0)


def _setting(name: str, value: int = 1, **kwargs: object) -> OptionSetting:
    level = kwargs.pop("level", Level.SOCKET)
    assert isinstance(level, Level)
    fallback = kwargs.pop("fallback", None)
    assert fallback is None or isinstance(fallback, OptionSetting)
    readback = kwargs.pop("readback", True)
    assert isinstance(readback, bool)
    return OptionSetting(
        "recv_buf", level, name, value, Phase.BEFORE_BIND, Necessity.REQUIRED, fallback, readback
    )


@linux_only
def test_linux_numbers_match_the_headers() -> None:
    # Checked against /usr/include/asm-generic/socket.h and linux/udp.h.
    expected = {
        "SO_BUSY_POLL": 46,
        "SO_PREFER_BUSY_POLL": 69,
        "SO_BUSY_POLL_BUDGET": 70,
        "SO_RXQ_OVFL": 40,
        "UDP_SEGMENT": 103,
        "UDP_GRO": 104,
        "SO_RCVBUFFORCE": 33,
        "SO_SNDBUFFORCE": 32,
    }
    for name, number in expected.items():
        assert OPTION_NUMBERS[name] == number
    # Where the socket module has a constant, the table agrees with it.
    for name, number in LINUX_OPTION_NUMBERS.items():
        if hasattr(socket, name):
            assert getattr(socket, name) == number, name


@linux_only
def test_every_planned_linux_option_has_a_number() -> None:
    missing = [name for name in OPTION_NAMES if name not in OPTION_NUMBERS]
    assert missing == ["SO_EXCLUSIVEADDRUSE"]  # Windows-only


def test_levels_map_to_protocol_numbers() -> None:
    assert option_number(Level.TCP, "TCP_NODELAY") == (socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert option_number(Level.SOCKET, "NOT_AN_OPTION") is None


def test_current_platform_is_known() -> None:
    assert current_platform() is Platform.from_sys_platform(sys.platform)


@linux_only
def test_refused_setting_uses_its_fallback_and_reads_back_the_plain_option() -> None:
    fake = FakeSocket(refuse={33: errno.EPERM})
    fallback = _setting("SO_RCVBUF", 4096)
    observed = apply_setting(fake, _setting("SO_RCVBUFFORCE", 4096, fallback=fallback))
    assert observed.used_fallback
    assert observed.error is None
    assert observed.effective == 4096
    assert [c[1] for c in fake.calls] == [33, socket.SO_RCVBUF]


@linux_only
def test_an_errno_is_recorded_never_swallowed() -> None:
    fake = FakeSocket(refuse={46: errno.EPERM})
    observed = apply_setting(fake, _setting("SO_BUSY_POLL", 50))
    assert (observed.error, observed.effective, observed.used_fallback) == (errno.EPERM, None, False)
    # When the fallback is refused too, its errno is what the report sees.
    fake = FakeSocket(refuse={33: errno.EPERM, socket.SO_RCVBUF: errno.ENOBUFS})
    fallback = _setting("SO_RCVBUF", 4096)
    observed = apply_setting(fake, _setting("SO_RCVBUFFORCE", 4096, fallback=fallback))
    assert (observed.error, observed.used_fallback) == (errno.ENOBUFS, True)


def test_an_option_without_a_number_is_not_supported() -> None:
    observed = apply_setting(FakeSocket(), _setting("SO_EXCLUSIVEADDRUSE_NOPE"))
    assert observed.error == errno.ENOPROTOOPT


@linux_only
def test_unreadable_and_write_only_options_are_not_read() -> None:
    fake = FakeSocket(unreadable={12})
    observed = apply_setting(fake, _setting("TCP_QUICKACK", level=Level.TCP, readback=False))
    assert (observed.error, observed.effective) == (None, None)
    fake = FakeSocket(unreadable={socket.SO_REUSEADDR})
    assert apply_setting(fake, _setting("SO_REUSEADDR")).effective is None


def test_required_refusal_raises_option_error_naming_it() -> None:
    config = NetConfig(prefer_busy_poll=True)
    plan = plan_options(config, Family.IPV4, SocketKind.UDP, Platform.LINUX)
    fake = FakeSocket(refuse={69: errno.EPERM})
    if not sys.platform.startswith("linux"):
        pytest.skip("the fake refuses by Linux number")
    report = build_report(plan, apply_settings(fake, plan.settings), KernelLimits())
    assert report["prefer_busy_poll"].status is OptionStatus.REFUSED
    with pytest.raises(OSError) as info:
        report.raise_for_required()
    assert info.value.errno == errno.EPERM
    assert "SO_PREFER_BUSY_POLL" in str(info.value)
    assert getattr(info.value, "field", None) == "prefer_busy_poll"


@linux_only
def test_real_socket_reads_back_what_the_report_says() -> None:
    config = NetConfig(ttl=42, recv_buf=100_000, send_buf=100_000)
    plan = plan_options(config, Family.IPV4, SocketKind.UDP, current_platform())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        observed = apply_settings(sock, plan.settings)
        report = build_report(plan, observed, read_kernel_limits())
        for outcome in report:
            if outcome.effective is None:
                continue
            name = sockopts.READBACK_NAMES.get(outcome.name, outcome.name)
            numbers = option_number(
                next(s.level for s in plan.settings if outcome.field == s.field), name
            )
            assert numbers is not None
            assert sock.getsockopt(*numbers) == outcome.effective, outcome.name


def test_kernel_limits_from_a_proc_tree(tmp_path: Path) -> None:
    (tmp_path / "rmem_max").write_text("212992\n")
    (tmp_path / "wmem_max").write_text("garbage\n")
    assert read_kernel_limits(tmp_path) == KernelLimits(rmem_max=212992, wmem_max=None)
    assert read_kernel_limits(tmp_path / "missing") == KernelLimits()


@linux_only
def test_kernel_limits_of_this_host() -> None:
    limits = read_kernel_limits()
    assert limits.rmem_max is not None
    assert limits.rmem_max > 0
    assert limits.wmem_max is not None
    assert limits.wmem_max > 0
