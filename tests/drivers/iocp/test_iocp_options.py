"""NetConfig with Windows meanings: what the iocp driver applies and what the report says is missing.

Windows only (run ``.ci/wine/run`` on Linux). Under Wine SO_REUSEADDR follows Linux rules, but
SO_EXCLUSIVEADDRUSE behaves as on Windows; only the latter is checked for its effect.
"""

from __future__ import annotations

import socket

import pytest

from horizon_core.config import NetConfig
from horizon_core.options import OptionStatus
from tests.drivers.iocp.iocp_helpers import iocp, windows_only

pytestmark = windows_only

LINUX_ONLY = ["reuse_port", "rx_drop_counter"]


def test_udp_report_skips_what_windows_lacks_with_the_reason() -> None:
    config = NetConfig(busy_poll=50, udp_gro=True, udp_gso_segment=1200,
                       best_effort=frozenset({"busy_poll", "udp_gro", "udp_gso_segment"}))
    with iocp.bind_udp("127.0.0.1:0", config) as sock:
        report = sock.options
        for field in [*LINUX_ONLY, "busy_poll", "udp_gro", "udp_gso_segment"]:
            outcome = report[field]
            assert outcome.status is OptionStatus.SKIPPED, outcome
            assert "not on this platform" in outcome.reason, outcome
        assert "Windows" in report["reuse_port"].reason
        assert report["recv_buf"].status is OptionStatus.APPLIED
        assert report["recv_buf"].effective == 1024 * 1024  # Windows does not double it


def test_exclusive_address_use_keeps_the_port_from_being_shared() -> None:
    with iocp.bind_udp("127.0.0.1:0", NetConfig(reuse_addr=False)) as sock:
        outcome = sock.options["SO_EXCLUSIVEADDRUSE"]
        assert outcome.field == "reuse_addr"
        assert outcome.status is OptionStatus.APPLIED, outcome
        intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with intruder, pytest.raises(OSError):
            intruder.bind(("127.0.0.1", sock.local_address.port))


def test_tos_is_best_effort_on_windows() -> None:
    with iocp.bind_udp("127.0.0.1:0", NetConfig(tos=0x10)) as sock:
        outcome = sock.options["tos"]
        assert outcome.necessity.value == "best_effort"
        assert outcome.status in (OptionStatus.APPLIED, OptionStatus.REFUSED,
                                  OptionStatus.UNSUPPORTED), outcome


def test_tcp_stream_report_covers_quickack_as_missing() -> None:
    with iocp.bind_tcp("127.0.0.1:0") as listener, iocp.connect_tcp(listener.local_address) as s:
        assert s.options["tcp_nodelay"].effective == 1
        assert s.options["tcp_quickack"].status is OptionStatus.SKIPPED
