"""``horizon soak``: the payload check and the ledgers as units (crafted duplicates, reordering,
corruption, loss), a deliberately broken echo server in a thread, and short end-to-end soaks of
every served driver with their JSON and exit statuses. No speed assertions; every loop bounded."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from horizon_core.addresses import SocketAddress
from horizon_drivers import registry
from horizon_drivers.bench.soak_client import Limit, soak_udp
from horizon_drivers.bench.soak_verify import (
    HEADER_SIZE,
    SizePlan,
    TcpLedger,
    UdpAccount,
    UdpLedger,
    check_payload,
    make_payload,
)
from horizon_drivers.cli.echo import served_drivers
from horizon_drivers.cli.echo_service import StopFlag
from horizon_drivers.cli.soak import ProgressPrinter, tcp_account, udp_account
from tests.cli.cli_helpers import ROOT, horizon_env


def _soak_command() -> list[str]:
    """``python -m horizon_drivers soak`` once registered in the ``horizon`` parser; until then
    the module's own entry point (same arguments, same exit statuses)."""
    from horizon_drivers.cli import build_parser

    try:
        build_parser().parse_args(["soak", "--help"])
    except SystemExit as exc:
        if exc.code == 0:
            return [sys.executable, "-m", "horizon_drivers", "soak"]
    except Exception:
        pass
    return [sys.executable, "-m", "horizon_drivers.cli.soak"]


def run_soak(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_soak_command(), *args], capture_output=True, text=True, timeout=timeout,
        env=horizon_env(), cwd=ROOT, stdin=subprocess.DEVNULL,
    )


# -- payloads -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [HEADER_SIZE, 17, 64, 1400, 65507])
def test_payload_round_trips_and_any_flipped_byte_is_caught(size: int) -> None:
    payload = make_payload(123456789, size)
    assert len(payload) == size
    assert check_payload(payload) == 123456789
    for position in {0, 3, 4, 8, 15, size // 2, size - 1}:
        corrupted = bytearray(payload)
        corrupted[position] ^= 0x40
        assert check_payload(corrupted) == -1, position


def test_cut_grown_and_swapped_payloads_are_caught() -> None:
    a, b = make_payload(1, 100), make_payload(2, 100)
    assert check_payload(a[:-1]) == -1
    assert check_payload(a + b"\0") == -1
    assert check_payload(a[:HEADER_SIZE] + b[HEADER_SIZE:]) == -1  # filler depends on the seq
    assert check_payload(b"short") == -1


def test_size_plan_parses_and_stays_in_range() -> None:
    plan = SizePlan.parse("20..30")
    sizes = {plan.size(seq) for seq in range(2000)}
    assert (min(sizes), max(sizes)) == (20, 30)
    for bad in ("8", "100..50", "x", "16..70000", ""):
        with pytest.raises(ValueError):
            SizePlan.parse(bad)


# -- the UDP ledger and its account -----------------------------------------------------------------


def _sent(ledger: UdpLedger, count: int, size: int = 32) -> list[bytes]:
    payloads = ledger.payloads(SizePlan(size, size), count)
    ledger.sent_more(count)
    return payloads


def test_ledger_classifies_crafted_datagrams() -> None:
    ledger = UdpLedger()
    p = _sent(ledger, 10)
    flipped = bytearray(p[7])
    flipped[-1] ^= 1
    for datagram in (p[0], p[2], p[1], p[2], p[3], bytes(flipped), make_payload(99, 32), p[5]):
        ledger.receive(datagram)
    # 0, 2, 1 (reordered), 2 again (duplicate), 3, 7 corrupted, 99 never sent, 5
    assert ledger.arrived == 8
    assert ledger.echoed == 5
    assert ledger.reordered == 1
    assert ledger.duplicates == 1
    assert ledger.corrupted == 2
    assert ledger.never_echoed == 5  # 4, 6, 7, 8, 9


def test_ledger_ring_keeps_unechoed_sequences_for_late_echoes() -> None:
    ledger = UdpLedger(ring_size=16)
    p = _sent(ledger, 100)
    for seq in range(100):
        if seq not in (5, 50):
            ledger.receive(p[seq])
    ledger.receive(p[5])  # long gone from the ring: echoed late, not a duplicate
    ledger.receive(p[5])  # now it is a duplicate
    ledger.receive(p[10])  # echoed in time, long ago: a duplicate
    assert (ledger.echoed, ledger.reordered, ledger.duplicates) == (99, 1, 2)
    assert ledger.never_echoed == 1


def _account(ledger: UdpLedger, **server: Any) -> UdpAccount:
    totals = {"kernel_drops": 0, "udp_unsent": 0, "udp_received": None, "udp_sent": None}
    totals.update(server)
    return udp_account(ledger, {"kernel_drops": 0, "datagrams_received": ledger.arrived}, totals)


def test_accounting_adds_up_and_fails_on_what_nothing_explains() -> None:
    ledger = UdpLedger()
    p = _sent(ledger, 10)
    for payload in p[:6]:
        ledger.receive(payload)
    # 4 missing: 3 dropped by the server's kernel, 1 not sent back
    ok = _account(ledger, kernel_drops=3, udp_unsent=1)
    assert ok.sent == ok.echoed + ok.corrupted + 3 + 0 + 1 + ok.unexplained
    assert ok.unexplained == 0
    assert ok.failures(strict=True) == []
    lost = _account(ledger, kernel_drops=2, udp_unsent=1)
    assert lost.unexplained == 1
    assert lost.failures(strict=False) == ["1 datagram lost without a drop count to explain it"]
    over = _account(ledger, kernel_drops=5, udp_unsent=1)
    assert over.unexplained == -2
    assert over.failures(strict=False)
    unread = _account(ledger, kernel_drops=None)
    assert "server kernel drops unreadable" in unread.failures(strict=False)[0]


def test_corruption_fails_and_duplicates_fail_only_when_strict() -> None:
    ledger = UdpLedger()
    p = _sent(ledger, 3)
    for payload in (p[1], p[0], p[0], p[2]):
        ledger.receive(payload)
    account = _account(ledger)
    assert account.failures(strict=False) == []
    assert account.failures(strict=True) == ["1 duplicate (--strict)",
                                              "1 reordered datagram (--strict)"]
    bad = bytearray(p[2])
    bad[20] ^= 0xFF
    ledger.receive(bytes(bad))
    assert _account(ledger).failures(strict=False) == ["1 corrupted datagram"]
    document = _account(ledger).to_dict()
    # A corrupted copy of a sequence echoed intact explains no loss: the counts still agree.
    assert (document["corrupted"], document["unexplained"]) == (1, 0)
    json.dumps(document)


# -- the TCP ledger -------------------------------------------------------------------------------


def test_tcp_ledger_compares_every_byte() -> None:
    ledger = TcpLedger()
    data = ledger.records(SizePlan(16, 40), 50) + ledger.records(SizePlan(16, 40), 50)
    for at in range(0, len(data), 7):  # arbitrary fragmentation
        ledger.receive(data[at : at + 7])
    assert ledger.mismatch is None
    assert (ledger.records_echoed, ledger.bytes_echoed) == (100, len(data))
    assert tcp_account([ledger], []).failures() == []


def test_tcp_ledger_reports_the_first_wrong_byte_and_its_record() -> None:
    ledger = TcpLedger()
    data = bytearray(ledger.records(SizePlan(20, 20), 10))
    data[45] ^= 1  # record 2 (bytes 40..59)
    ledger.receive(bytes(data[:30]))
    ledger.receive(bytes(data[30:]))
    assert (ledger.mismatch, ledger.mismatch_record) == (45, 2)
    account = tcp_account([ledger], [])
    assert account.failures() == [
        "connection 0: echoed byte 45 (record 2) differs from the byte sent"
    ]


def test_tcp_lost_and_extra_bytes_fail() -> None:
    short = TcpLedger()
    data = short.records(SizePlan(20, 20), 3)
    short.receive(data[:-5])
    assert tcp_account([short], []).failures() == ["5 bytes sent were never echoed"]
    extra = TcpLedger()
    extra.receive(extra.records(SizePlan(20, 20), 1) + b"x")
    assert extra.mismatch == 20


# -- a broken server, in a thread -------------------------------------------------------------------


@attrs.define
class _BrokenEcho:
    """A stdlib UDP echo that corrupts datagram ``corrupt_at`` and drops ``drop_at``."""

    sock: socket.socket
    corrupt_at: int
    drop_at: int
    done: threading.Event = attrs.field(factory=threading.Event)
    received: int = 0

    def serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.done.is_set():
            try:
                data, peer = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            index = self.received
            self.received += 1
            if index == self.drop_at:
                continue
            if index == self.corrupt_at:
                data = data[:30] + bytes([data[30] ^ 0x01]) + data[31:]
            self.sock.sendto(data, peer)


@pytest.fixture
def broken_echo() -> Iterator[_BrokenEcho]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    server = _BrokenEcho(sock, corrupt_at=100, drop_at=200)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.done.set()
        thread.join(5)
        sock.close()


def test_soak_client_catches_a_corrupting_and_dropping_server(broken_echo: _BrokenEcho) -> None:
    target = SocketAddress.parse(f"127.0.0.1:{broken_echo.sock.getsockname()[1]}")
    result = soak_udp(registry.get_driver("portable"), target, sizes=SizePlan(64, 64), window=8,
                      limit=Limit(10.0, 1000), grace=0.3, stop=StopFlag(), progress=lambda p: None)
    # The thread's socket has no drop counter: every datagram it lost or broke is on it.
    account = udp_account(result.ledger, result.client_stats,
                          {"kernel_drops": 0, "udp_unsent": 0})
    assert result.error is None
    assert (account.sent, account.echoed, account.corrupted) == (1000, 998, 1)
    assert account.unexplained == 1  # the dropped one: nothing counted it
    assert account.failures(strict=False) == [
        "1 datagram lost without a drop count to explain it", "1 corrupted datagram",
    ]


# -- progress ---------------------------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_rewrites_in_place_on_a_terminal_only() -> None:
    tty = _Tty()
    printer = ProgressPrinter(tty)
    printer("a long first line")
    printer("short")
    printer.done()
    assert tty.getvalue() == ("\rhorizon soak: a long first line"
                              "\rhorizon soak: short            \n")
    plain = io.StringIO()
    printer = ProgressPrinter(plain)
    printer("one")
    printer("two")
    printer.done()
    assert plain.getvalue() == "horizon soak: one\nhorizon soak: two\n"


# -- end to end -------------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", served_drivers())
def test_short_soak_passes_on_every_served_driver(driver: str, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    result = run_soak("--driver", driver, "--count", "20000", "--tcp", "--size", "16..512",
                      "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"{driver} udp: PASS" in result.stdout
    assert f"{driver} tcp: PASS" in result.stdout
    assert result.stdout.rstrip().endswith("horizon soak: PASS")

    document = json.loads(out.read_text())
    assert document["passed"] is True
    assert document["settings"]["drivers"] == [driver]
    assert document["settings"]["count"] == 20000
    assert document["machine"]["usable_cpus"] >= 1
    assert "recv_buf" in document["config"]["fields"]
    udp, tcp = document["runs"]
    assert (udp["protocol"], tcp["protocol"]) == ("udp", "tcp")
    a = udp["account"]
    assert a["sent"] == 20000
    drops = a["server_kernel_drops"] + a["client_kernel_drops"]
    assert a["sent"] == a["echoed"] + a["corrupted"] + drops + a["server_unsent"] + a["unexplained"]
    assert (a["unexplained"], a["corrupted"]) == (0, 0)
    assert udp["server"]["udp_received"] + a["server_kernel_drops"] == a["sent"]
    t = tcp["account"]
    assert t["records_sent"] == t["records_echoed"] == 20000
    assert t["bytes_sent"] == t["bytes_echoed"] > 0
    assert t["mismatches"] == []


def test_duration_soak_all_drivers_with_progress_and_json_on_stdout() -> None:
    result = run_soak("--all-drivers", "--duration", "1.2", "--json", "-")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # the summaries went to stderr
    assert [r["driver"] for r in document["runs"]] == list(served_drivers())
    assert all(r["passed"] and r["account"]["sent"] > 0 for r in document["runs"])
    assert " udp 1.0s: sent " in result.stderr  # one progress line a second, plain (no TTY)
    assert "\r" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "0"], "--window must be"),
        (["--size", "8"], "--size:"),
        (["--size", "10..5"], "--size:"),
        (["--count", "0"], "--count must be at least 1"),
        (["--duration", "-1"], "--duration must be"),
        (["--duration", "1", "--count", "5"], "not allowed with argument"),
        (["--grace", "99"], "--grace must be"),
        (["--connections", "0"], "--connections must be"),
        (["--no-udp"], "soaks nothing"),
        (["--driver", "sim"], "in-memory"),
        (["--driver", "nope"], "unknown driver"),
        (["--driver", "native", "--all-drivers"], "not allowed with argument"),
        (["--config", "/nonexistent/net.toml"], "config file not found"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = run_soak(*args, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("horizon: error:"), result.stderr
    assert message in lines[0]
