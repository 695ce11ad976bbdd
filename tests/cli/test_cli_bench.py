"""``horizon bench`` end to end with a tiny duration: JSON structure, positive numbers, plot."""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from horizon_drivers.bench import child as bench_child
from horizon_drivers.bench.child import load_generator_status
from horizon_drivers.bench.peers import peer_status
from horizon_drivers.bench.report import BenchReport, Contender
from horizon_drivers.bench.runner import Measurement, Placement, measure
from horizon_drivers.cli.bench import render_table
from horizon_drivers.cli.echo import default_driver
from horizon_drivers.cli.machine import describe_machine
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
        if udp_ok:
            # The native generator measured TCP too, and its quantiles make a real CDF.
            assert tcp["load_generator"] == "native"
            assert tcp["drained"] is True
            assert len(tcp["rtt"]["cdf"]) > 100
        assert _positive(contender["ratios"]["tcp_bytes_per_s"])
        if udp_ok:
            udp = contender["udp"]["result"]
            assert udp is not None, contender["udp"]["error"]
            assert _positive(udp["datagrams_per_s"])
            assert udp["received"] > 0
            _check_rtt(udp["rtt_loaded"])
            assert len(udp["rtt"]["cdf"]) > 100
            # The server's CPU over the windowed run alone, the CPU column's basis: it busy
            # echoed for the whole run, so the kernel counted ticks.
            assert udp["server_cpu_windowed_s"] > 0
            assert contender["cpu_us_per_datagram"] == pytest.approx(
                udp["server_cpu_windowed_s"] / udp["total_received"] * 1e6
            )
            assert _positive(contender["ratios"]["udp_datagrams_per_s"])
    assert by_name["stdlib"]["ratios"]["tcp_bytes_per_s"] == pytest.approx(1.0)
    # A Horizon server reports its own counts on the way out.
    server = by_name[driver]["tcp"]["server"]
    assert server is not None
    assert server["tcp_bytes"] > 0
    if plot:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not load_generator_status()[0], reason=load_generator_status()[1])
def test_bench_c_peer_gives_every_row_a_ratio_to_it(tmp_path: Path) -> None:
    if not peer_status("c").available:
        pytest.skip(peer_status("c").reason)
    out = tmp_path / "bench.json"
    result = run_horizon("bench", "--duration", "0.1", "--drivers", "none", "--peers",
                         "c,stdlib", "--pipeline", "16", "--json", str(out), timeout=150)
    assert result.returncode == 0, result.stderr
    assert "x c" in result.stdout
    assert "TCP msg/s" in result.stdout
    report = json.loads(out.read_text())
    assert report["reference"] == "c"
    assert report["settings"]["pipeline"] == 16
    by_name = {c["name"]: c for c in report["contenders"]}
    assert set(by_name) == {"c", "stdlib"}
    for name in ("c", "stdlib"):
        tcp = by_name[name]["tcp"]["result"]
        assert tcp is not None, by_name[name]["tcp"]["error"]
        assert tcp["pipeline"] == 16
        assert _positive(tcp["messages_per_s"])
        assert tcp["rtt_pipelined"]["samples"] > 0
        assert by_name[name]["udp"]["result"] is not None, by_name[name]["udp"]["error"]
        ratios = by_name[name]["ratios_to_c"]
        for key in ("udp_datagrams_per_s", "tcp_bytes_per_s", "tcp_messages_per_s",
                    "tcp_rtt_p50", "udp_rtt_p50"):
            assert _positive(ratios[key]), key
    assert by_name["c"]["ratios_to_c"]["tcp_messages_per_s"] == pytest.approx(1.0)
    # The C server reports its own counts on the way out, like a Horizon driver.
    assert by_name["c"]["tcp"]["server"]["bytes_received"] > 0
    assert by_name["c"]["udp"]["server"]["received"] > 0


def test_a_server_that_cannot_start_is_a_reported_failure_not_a_hang() -> None:
    measurement = measure(
        "no-such-server", "udp", Placement(None, None),
        duration=0.1, warmup=0.0, size=64, window=4,
    )
    assert not measurement.ok
    assert measurement.error is not None
    assert "unknown driver 'no-such-server'" in measurement.error


@pytest.fixture
def tcp_echo() -> Iterator[str]:
    """A one-thread-per-connection TCP echo on 127.0.0.1, every wait bounded; yields host:port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def echo(conn: socket.socket) -> None:
        conn.settimeout(0.05)
        with conn:
            while not stop.is_set():
                try:
                    data = conn.recv(65536)
                    if not data:
                        return
                    conn.sendall(data)
                except TimeoutError:
                    continue
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threads.append(threading.Thread(target=echo, args=(conn,)))
            threads[-1].start()

    threads.append(threading.Thread(target=accept))
    threads[0].start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        for thread in threads:
            thread.join(5.0)
        listener.close()


def _load_tcp(target: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    status = bench_child.main(["load", "tcp", target, "--duration", "0.1", "--warmup", "0.0",
                               "--size", "64", "--window", "1"])
    out = capsys.readouterr().out
    assert status == 0, out
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])["result"]
    return result


def test_tcp_load_falls_back_to_python_and_says_so(
    tcp_echo: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_child, "load_generator_status",
                        lambda: (False, "the native load generator is unavailable (test)"))
    result = _load_tcp(tcp_echo, capsys)
    assert result["load_generator"] == bench_child.PYTHON_FALLBACK
    assert "Python client" in result["load_generator_note"]
    assert _positive(result["bytes_per_s"])
    _check_rtt(result["rtt"])
    measurement = Measurement("tcp", result, None)
    report = BenchReport(describe_machine(), {"duration": 0.1, "size": 64, "window": 1,
                                              "placement": "not pinned"}, "stdlib",
                         (Contender("stdlib", "peer", tcp=measurement),))
    assert "TCP measured by the Python client: the native load generator is unavailable" in (
        render_table(report)
    )


@pytest.mark.skipif(not load_generator_status()[0], reason=load_generator_status()[1])
def test_tcp_load_uses_the_native_generator(
    tcp_echo: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _load_tcp(tcp_echo, capsys)
    assert result["load_generator"] == "native"
    assert result["drained"] is True
    assert _positive(result["bytes_per_s"])
    _check_rtt(result["rtt"])
