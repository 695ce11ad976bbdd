"""``horizon probe``: the report parsed from --json, and the text form."""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import pytest

from horizon_core.config import NetConfig
from horizon_core.options import Feature, OptionStatus
from horizon_drivers import registry
from horizon_drivers.cli.probe import io_uring_status, probe_sockets
from horizon_drivers.opening import NATIVE_FEATURES
from tests.cli.cli_helpers import run_horizon


def test_probe_json_reports_every_socket_option_and_the_host(tmp_path: Path) -> None:
    config = tmp_path / "net.toml"
    config.write_text('preset = "low_latency"\nrecv_buf = "512KiB"\n')
    result = run_horizon("probe", "--json", "--config", str(config), timeout=60)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)

    assert data["config"]["recv_buf"] == 512 * 1024
    assert data["config"]["ttl"] is None  # JSON null, not the string "none" TOML needs
    assert data["config"]["best_effort"] == sorted(data["config"]["best_effort"])
    opened = [s for s in data["sockets"] if s["error"] is None]
    assert {(s["family"], s["kind"]) for s in opened} >= {
        ("ipv4", "udp"), ("ipv4", "tcp_listener"), ("ipv4", "tcp_stream"),
    }
    udp4 = next(s for s in opened if (s["family"], s["kind"]) == ("ipv4", "udp"))
    recv_buf = next(o for o in udp4["options"] if o["field"] == "recv_buf")
    assert recv_buf["requested"] == 512 * 1024
    assert recv_buf["effective"] >= 512 * 1024 or recv_buf["status"] == "adjusted"
    assert recv_buf["reason"]
    assert recv_buf["necessity"] in ("required", "REQUIRED: opening fails")
    for sock in opened:
        for option in sock["options"]:
            assert set(option) >= {"field", "name", "requested", "effective", "status", "reason"}

    assert set(data["kernel"]) >= {"net.core.rmem_max", "net.core.wmem_max",
                                   "net.core.somaxconn", "net.core.busy_poll",
                                   "net.core.busy_read"}
    assert data["cpus"]["usable"] >= 1
    assert data["numa_nodes"]
    assert isinstance(data["io_uring"]["available"], bool)
    assert data["io_uring"]["detail"]
    assert {d["name"] for d in data["drivers"]} >= {"native", "portable", "aio", "sim", "iocp"}


def test_probe_text_form() -> None:
    result = run_horizon("probe", timeout=60)
    assert result.returncode == 0, result.stderr
    for heading in ("ipv4 udp", "kernel limits", "CPUs:", "NUMA:", "io_uring:", "drivers:"):
        assert heading in result.stdout
    # The summary leads: what was not applied as asked comes before the per-socket tables.
    summary, _, details = result.stdout.partition("per socket:")
    assert "not as asked" in summary
    assert "skipped on ipv4 udp, ipv6 udp: not for UDP sockets" in summary or (
        "skipped on ipv4 udp: not for UDP sockets" in summary
    )
    assert "ipv4 udp (" in details


def test_io_uring_answers_are_explained() -> None:
    assert io_uring_status(syscall=lambda: errno.EFAULT).available
    blocked = io_uring_status(syscall=lambda: errno.EPERM)
    assert not blocked.available
    assert "EPERM" in blocked.detail
    assert not io_uring_status(syscall=lambda: errno.ENOSYS).available


def _zerocopy_statuses(features: frozenset[Feature] | None) -> set[OptionStatus]:
    probes = probe_sockets(NetConfig(zerocopy_threshold=16384), features)
    return {
        probe.report["zerocopy_threshold"].status
        for probe in probes
        if probe.kind == "udp" and probe.report is not None
    }


def test_probe_plans_with_the_given_driver_features() -> None:
    # Without features SO_ZEROCOPY is skipped with its reason; with native's it is planned.
    assert _zerocopy_statuses(frozenset()) == {OptionStatus.SKIPPED}
    if sys.platform.startswith("linux"):  # SO_ZEROCOPY is Linux's
        assert OptionStatus.SKIPPED not in _zerocopy_statuses(NATIVE_FEATURES)


@pytest.mark.skipif(not registry.driver_status("native").available, reason="native driver not built")
def test_probe_defaults_to_the_native_driver_features() -> None:
    assert _zerocopy_statuses(None) == _zerocopy_statuses(NATIVE_FEATURES)
