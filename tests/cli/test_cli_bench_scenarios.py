"""``horizon bench --scenario gso|spin|tcp-spin|aio-backends`` end to end on loopback with a tiny duration:
table, JSON keys, counts > 0; bad values refused with one line and exit status 2. Behaviour only,
never speed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from horizon_drivers.bench.child import load_generator_status
from horizon_drivers.bench.peers import backend_status, peer_status
from tests.cli.cli_helpers import run_horizon

needs_loadgen = pytest.mark.skipif(not load_generator_status()[0],
                                   reason=load_generator_status()[1])


def _run(tmp_path: Path, scenario: str, *extra: str) -> tuple[str, dict[str, Any]]:
    out = tmp_path / f"{scenario}.json"
    result = run_horizon("bench", "--scenario", scenario, "--duration", "0.1", "--rounds", "1",
                         "--json", str(out), *extra, timeout=240)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "machine:" in result.stdout
    report: dict[str, Any] = json.loads(out.read_text())
    assert report["scenario"] == scenario
    assert set(report) >= {"scenario", "machine", "settings", "rows"}
    assert report["settings"]["rounds"] == 1
    return result.stdout, report


def _measured(report: dict[str, Any]) -> dict[tuple[str, str | None], dict[str, Any]]:
    rows = {}
    for row in report["rows"]:
        if row["skipped"] is None:
            assert len(row["rounds"]) == 1
            round_ = row["rounds"][0]
            assert round_["result"] is not None, round_["error"]
            assert round_["result"]["total_received"] > 0
            rows[(row["label"], row["backend"])] = row
    return rows


@needs_loadgen
def test_gso_scenario(tmp_path: Path) -> None:
    stdout, report = _run(tmp_path, "gso", "--window", "8")
    rows = _measured(report)
    labels = {label for label, _ in rows}
    assert {"native", "native-plain", "stdlib"} <= labels
    assert ("uvloop" in labels) == peer_status("uvloop").available
    assert ("c" in labels) == peer_status("c").available
    by_label = {row["label"]: row for row in report["rows"]}
    if "c" in labels:
        # Every row's median rate over the C reference server's, in the JSON and the table.
        assert by_label["c"]["ratio_to_c"] == pytest.approx(1.0)
        assert by_label["native"]["ratio_to_c"] > 0
        assert by_label["stdlib"]["c_row"] == "c"
        assert "x c" in stdout
    for row in rows.values():
        summary = row["summary"]
        assert summary["median_rate"] > 0
        assert summary["best_rate"] >= summary["median_rate"]
        assert summary["rounds_ok"] == 1
    for column in ("median/s", "xstdlib", "per CPU-s", "native-plain"):
        assert column in stdout


@needs_loadgen
def test_spin_scenario(tmp_path: Path) -> None:
    stdout, report = _run(tmp_path, "spin", "--spin-budget", "20")
    rows = _measured(report)
    expected = {("native-spin", None), ("native-blocking", None), ("aio-spin", "asyncio"),
                ("aio-blocking", "asyncio")}
    if backend_status("uvloop").available:
        expected |= {("aio-uvloop-spin", "uvloop"), ("aio-uvloop-blocking", "uvloop")}
    if peer_status("c").available:
        expected |= {("c-spin", None), ("c-blocking", None)}
        by_label = {row["label"]: row for row in report["rows"]}
        assert by_label["native-spin"]["c_row"] == "c-spin"
        assert by_label["native-blocking"]["c_row"] == "c-blocking"
        assert by_label["aio-spin"]["c_row"] == "c-spin"
        assert by_label["c-spin"]["ratio_to_c"] == pytest.approx(1.0)
        assert by_label["native-spin"]["ratio_to_c"] > 0
        assert "x c" in stdout
    assert set(rows) == expected
    assert report["settings"]["window"] == 1
    assert report["settings"]["spin_budget"] == 20
    for row in rows.values():
        summary = row["summary"]
        assert summary["samples"] > 0
        assert 0 < summary["p50_us"] <= summary["p99_us"] <= summary["p999_us"]
    assert "p50 us" in stdout
    assert "spin_budget=20" in stdout
    assert "aio: spin budget changes" in stdout


@needs_loadgen
def test_tcp_spin_scenario(tmp_path: Path) -> None:
    stdout, report = _run(tmp_path, "tcp-spin", "--spin-budget", "20")
    assert report["settings"]["protocol"] == "tcp"
    assert report["settings"]["spin_budget"] == 20
    rows = {row["label"]: row for row in report["rows"] if row["skipped"] is None}
    expected = {"native-spin", "native-blocking", "aio-spin", "aio-blocking"}
    if backend_status("uvloop").available:
        expected |= {"aio-uvloop-spin", "aio-uvloop-blocking"}
    if peer_status("c").available:
        expected |= {"c-spin", "c-blocking"}
        assert rows["aio-spin"]["c_row"] == "c-spin"
        assert rows["aio-blocking"]["c_row"] == "c-blocking"
        assert rows["c-blocking"]["ratio_to_c"] == pytest.approx(1.0)
        assert rows["aio-spin"]["ratio_to_c"] > 0
    assert set(rows) == expected
    for row in rows.values():
        (round_,) = row["rounds"]
        result = round_["result"]
        assert result is not None, round_["error"]
        assert "bytes_per_s" not in result  # mode rtt: no streaming run
        assert result["messages"] > 0
        summary = row["summary"]
        assert summary["median_rate"] == pytest.approx(result["messages_per_s"])
        assert summary["samples"] > 0
        assert 0 < summary["p50_us"] <= summary["p99_us"] <= summary["p999_us"]
    for text in ("pipelined msg/s", "spin_budget=20", "aio: spin budget changes", "backend"):
        assert text in stdout


@needs_loadgen
def test_aio_backends_scenario(tmp_path: Path) -> None:
    stdout, report = _run(tmp_path, "aio-backends", "--window", "8", "--duration", "0.3")
    rows = _measured(report)
    for backend in ("asyncio", "uvloop", "trio"):
        expected = {("horizon-batch", backend), ("horizon-single", backend),
                    ("anyio-plain", backend)}
        if backend_status(backend).available:
            assert expected <= set(rows)
        else:
            assert not expected & set(rows)
    assert all(row["summary"]["median_rate"] > 0 for row in rows.values())
    assert "xanyio-plain" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--scenario", "nope"), "unknown --scenario 'nope'"),
        (("--scenario", "gso", "--rounds", "0"), "--rounds must be 1 to"),
        (("--rounds", "3"), "--rounds applies to --scenario gso"),
        (("--scenario", "spin", "--peers", "stdlib"), "--peers applies to --scenario echo only"),
        (("--scenario", "gso", "--spin-budget", "-1"), "--spin-budget must be"),
        (("--scenario", "gso", "--buffer", "1"), "--buffer must be"),
        (("--scenario", "gso", "--pipeline", "8"), "--pipeline applies to --scenario echo only"),
        (("--pipeline", "0"), "--pipeline must be 1 to 4096, got 0"),
        (("--pipeline", "5000"), "--pipeline must be 1 to 4096"),
    ],
)
def test_bad_scenario_values_are_refused_with_one_line(args: tuple[str, ...], message: str) -> None:
    result = run_horizon("bench", *args, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
