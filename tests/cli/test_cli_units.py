"""The command's pure parts, without processes: arguments, config files, errors, reports."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import horizon_core
import horizon_drivers
from horizon_core.config import MiB, NetConfig
from horizon_core.errors import ConfigError, OptionError
from horizon_drivers.bench.latency import LatencySummary, summarize_rtts
from horizon_drivers.bench.report import BenchReport, Contender
from horizon_drivers.bench.runner import Measurement
from horizon_drivers.cli import main
from horizon_drivers.cli.bench import render_table
from horizon_drivers.cli.echo_service import Bound, EchoTotals
from horizon_drivers.cli.endpoints import load_config, parse_endpoint
from horizon_drivers.cli.failures import CommandError, explain
from horizon_drivers.cli.machine import MachineDescription, cpu_model


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9000", "127.0.0.1:9000"),
        (":9000", "127.0.0.1:9000"),
        ("localhost:53", "127.0.0.1:53"),
        ("0.0.0.0:1", "0.0.0.0:1"),
        ("[::]:7", "[::]:7"),
    ],
)
def test_endpoints(text: str, expected: str) -> None:
    assert str(parse_endpoint(text, "--udp")) == expected


def test_config_file_with_preset_and_table(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text('[net]\npreset = "high-throughput"\nbusy_poll = "50us"\n')
    config = load_config(str(path))
    assert config.recv_buf == NetConfig.high_throughput().recv_buf == 8 * MiB
    assert config.busy_poll == 50
    path.write_text('preset = "fastest"\n')
    with pytest.raises(CommandError, match="preset='fastest'"):
        load_config(str(path))


def test_explain_gives_one_line_for_user_errors_only() -> None:
    assert explain(OSError(errno.EADDRINUSE, "Address already in use")) == (
        "port in use: Address already in use"
    )
    refused = OptionError("busy_poll", "SO_BUSY_POLL", errno.EPERM, "not permitted")
    assert explain(refused) == (
        "required socket option refused: SO_BUSY_POLL (NetConfig.busy_poll) was refused: "
        "not permitted"
    )
    with pytest.raises(ConfigError) as info:
        NetConfig(tos=300, ttl=0)
    line = explain(info.value)
    assert line is not None
    assert "tos=300" in line
    assert "ttl=0" in line
    assert explain(KeyError("bug")) is None


def test_echo_totals_add_and_summarize() -> None:
    a = EchoTotals(seconds=2.0, udp_received=4, udp_sent=4, udp_recv_calls=2, kernel_drops=None)
    b = EchoTotals(seconds=3.0, udp_received=6, udp_sent=5, udp_recv_calls=3, udp_unsent=1,
                   kernel_drops=2, tcp_connections=1, tcp_bytes=2048)
    total = a + b
    assert (total.seconds, total.udp_received, total.kernel_drops) == (3.0, 10, 2)
    assert EchoTotals.from_dict(total.to_dict()) == total
    bound = Bound(parse_endpoint("9", "--udp"), parse_endpoint("9", "--tcp"))
    assert total.summary(bound) == (
        "stopped after 3.0s: udp 9 datagrams echoed of 10 received (0 B), 2.0 per recv call, "
        "1 unsent, kernel drops 2; tcp 1 connections, 2.0 KiB echoed"
    )


def _contender(name: str, rate: float, p50_ns: int) -> Contender:
    rtt = summarize_rtts([p50_ns] * 10)
    assert rtt is not None
    udp = Measurement("udp", {"datagrams_per_s": rate, "rtt": rtt.to_dict()}, None)
    tcp = Measurement("tcp", None, "no answer within 20s")
    return Contender(name, "driver" if name == "native" else "peer", udp, tcp)


def test_report_ratios_table_and_json() -> None:
    machine = MachineDescription("cpu", "Linux 6", "CPython 3.11", 2, 2)
    settings = {"duration": 1.0, "size": 64, "window": 64, "placement": "pinned"}
    report = BenchReport(
        machine, settings, "stdlib",
        (_contender("native", 300_000, 20_000), _contender("stdlib", 100_000, 40_000),
         Contender("uvloop", "peer", skipped="uvloop is not installed")),
    )
    assert report.ratio("native", "udp", "datagrams_per_s") == pytest.approx(3.0)
    assert report.latency_ratio("native", "udp") == pytest.approx(2.0)
    assert report.ratio("native", "tcp", "bytes_per_s") is None
    table = render_table(report)
    assert "300,000" in table
    assert "3.00x" in table
    assert "uvloop: skipped (uvloop is not installed)" in table
    assert "native tcp: no answer within 20s" in table
    data = report.to_dict()
    native = data["contenders"][0]
    assert native["ratios"]["udp_datagrams_per_s"] == pytest.approx(3.0)
    assert native["tcp"]["error"] == "no answer within 20s"


def test_latency_summary_round_trips_and_handles_the_generator() -> None:
    summary = summarize_rtts(range(1000, 101000, 1000))
    assert summary is not None
    assert (summary.p50_us, summary.p99_us, summary.p999_us) == (50.0, 99.0, 100.0)
    assert LatencySummary.from_dict(summary.to_dict()) == summary
    assert LatencySummary.from_load_generator({"samples": 0}) is None


def test_cpu_model_falls_back(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU @ 3GHz\n")
    assert cpu_model(cpuinfo) == "Example CPU @ 3GHz"
    assert cpu_model(tmp_path / "missing") != ""


def _with_tcp(name: str, udp_rate: float, messages: float, p50_ns: int) -> Contender:
    rtt = summarize_rtts([p50_ns] * 10)
    assert rtt is not None
    udp = Measurement("udp", {"datagrams_per_s": udp_rate, "rtt": rtt.to_dict()}, None)
    tcp = Measurement("tcp", {"bytes_per_s": 1e6, "messages_per_s": messages,
                              "rtt": rtt.to_dict(), "rtt_pipelined": rtt.to_dict()}, None)
    return Contender(name, "peer", udp, tcp)


def test_report_ratios_to_the_c_reference_server() -> None:
    machine = MachineDescription("cpu", "Linux 6", "CPython 3.11", 2, 2)
    settings = {"duration": 1.0, "size": 64, "window": 64, "placement": "pinned",
                "pipeline": 256}
    report = BenchReport(machine, settings, "stdlib", (
        _with_tcp("c", 400_000, 2_000_000, 10_000),
        _with_tcp("stdlib", 100_000, 500_000, 40_000),
    ))
    assert report.ratio("stdlib", "tcp", "messages_per_s", "c") == pytest.approx(0.25)
    assert report.latency_ratio("stdlib", "tcp", "c", "rtt_pipelined") == pytest.approx(0.25)
    data = report.to_dict()
    assert data["reference"] == "c"
    by_name = {c["name"]: c for c in data["contenders"]}
    assert by_name["stdlib"]["ratios_to_c"]["udp_datagrams_per_s"] == pytest.approx(0.25)
    assert by_name["stdlib"]["ratios_to_c"]["tcp_messages_per_s"] == pytest.approx(0.25)
    assert by_name["c"]["ratios"]["tcp_messages_per_s"] == pytest.approx(4.0)
    assert all(v == pytest.approx(1.0) for v in by_name["c"]["ratios_to_c"].values())
    table = render_table(report)
    assert "x c" in table
    assert "TCP msg/s" in table
    assert "2,000,000" in table
    assert "0.25x" in table
    assert "TCP pipeline 256" in table
    # Without a measured c row the x c columns are left out.
    without = BenchReport(machine, settings, "stdlib", (
        Contender("c", "peer", skipped="the C reference server is not built here"),
        _with_tcp("stdlib", 100_000, 500_000, 40_000),
    ))
    assert "x c" not in render_table(without)
    assert without.to_dict()["contenders"][1]["ratios_to_c"]["tcp_messages_per_s"] is None
    # With c as the baseline, its ratios are shown once: as the x c columns.
    table_vs_c = render_table(BenchReport(machine, settings, "c", report.contenders))
    header = next(line for line in table_vs_c.splitlines() if line.startswith("server"))
    assert header.count("x c") == 3
    assert "xc" not in header
    assert "xc:" not in table_vs_c
    assert "x c: relative to c" in table_vs_c


def test_version_is_one_string_for_both_packages_and_the_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert horizon_drivers.__version__ == horizon_core.__version__
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"horizon {horizon_core.__version__}\n"
