"""``horizon bench`` end to end with a tiny duration: JSON structure, positive numbers, plot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from horizon_drivers.cli.bench_child import load_generator_status
from horizon_drivers.cli.bench_runner import Placement, measure
from horizon_drivers.cli.echo import default_driver
from tests.cli.cli_helpers import run_horizon


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and value > 0


def _check_rtt(rtt: Any) -> None:
    assert isinstance(rtt, dict)
    assert rtt["samples"] > 0
    assert 0 < rtt["p50_us"] <= rtt["p99_us"] <= rtt["p999_us"]
    assert all(_positive(us) for _, us in rtt["cdf"])


def test_bench_tiny_run_writes_json_and_plot(tmp_path: Path) -> None:
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    driver = default_driver()
    args = ["bench", "--duration", "0.2", "--drivers", f"{driver},iocp", "--peers", "stdlib",
            "--json", str(out)]
    plot = importlib.util.find_spec("matplotlib") is not None
    if plot:
        args += ["--plot", str(png)]
    result = run_horizon(*args, timeout=150)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "[4/4]" in result.stderr  # progress: 2 servers x 2 protocols
    assert "machine:" in result.stdout
    assert "iocp: skipped (Windows only)" in result.stdout

    report = json.loads(out.read_text())
    assert set(report) >= {"machine", "settings", "baseline", "contenders"}
    assert report["baseline"] == "stdlib"
    assert report["machine"]["usable_cpus"] >= 1
    assert report["machine"]["cpu_model"]
    by_name = {c["name"]: c for c in report["contenders"]}
    assert by_name["iocp"]["skipped"] == "Windows only"
    udp_ok = load_generator_status()[0]
    for name in (driver, "stdlib"):
        contender = by_name[name]
        assert contender["skipped"] is None
        tcp = contender["tcp"]["result"]
        assert tcp is not None, contender["tcp"]["error"]
        assert _positive(tcp["bytes_per_s"])
        _check_rtt(tcp["rtt"])
        assert _positive(contender["ratios"]["tcp_bytes_per_s"])
        if udp_ok:
            udp = contender["udp"]["result"]
            assert udp is not None, contender["udp"]["error"]
            assert _positive(udp["datagrams_per_s"])
            assert udp["received"] > 0
            _check_rtt(udp["rtt_loaded"])
            assert _positive(contender["ratios"]["udp_datagrams_per_s"])
    assert by_name["stdlib"]["ratios"]["tcp_bytes_per_s"] == pytest.approx(1.0)
    # A Horizon server reports its own counts on the way out.
    server = by_name[driver]["tcp"]["server"]
    assert server is not None
    assert server["tcp_bytes"] > 0
    if plot:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_server_that_cannot_start_is_a_reported_failure_not_a_hang() -> None:
    measurement = measure(
        "no-such-server", "udp", Placement(None, None),
        duration=0.1, warmup=0.0, size=64, window=4,
    )
    assert not measurement.ok
    assert measurement.error is not None
    assert "unknown driver 'no-such-server'" in measurement.error
