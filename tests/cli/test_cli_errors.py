"""Every failure the user can fix is one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from horizon_drivers.cli.echo import served_drivers
from horizon_drivers.tuning import usable_cpu_count
from tests.cli.cli_helpers import run_horizon


def _one_line_failure(*args: str) -> str:
    result = run_horizon(*args, timeout=60)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("horizon: error: ")
    return lines[0]


@pytest.fixture(params=[socket.SOCK_DGRAM, socket.SOCK_STREAM], ids=["udp", "tcp"])
def squatter(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """A socket holding a loopback port without SO_REUSEPORT, so nobody else can bind it."""
    kind: int = request.param
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            sock.listen(1)
        yield ("udp" if kind == socket.SOCK_DGRAM else "tcp"), sock.getsockname()[1]


@pytest.mark.parametrize("driver", served_drivers())
def test_port_in_use(squatter: tuple[str, int], driver: str) -> None:
    protocol, port = squatter
    line = _one_line_failure("echo", "--driver", driver, f"--{protocol}", f"127.0.0.1:{port}")
    assert "port in use" in line
    assert f"({protocol} 127.0.0.1:{port})" in line


def test_address_not_on_this_host() -> None:
    # TEST-NET-1 (RFC 5737): never assigned to a local interface.
    line = _one_line_failure("echo", "--udp", "192.0.2.1:9000")
    assert "address not available on this host" in line


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("nowhere:9000", "names are not resolved"),
        ("127.0.0.1", "bad address for --udp"),
        ("127.0.0.1:99999", "port must be a number"),
        ("::1:80", "needs brackets"),
    ],
)
def test_bad_address(address: str, expected: str) -> None:
    line = _one_line_failure("echo", "--udp", address)
    assert expected in line


def test_unknown_driver_lists_the_known_ones() -> None:
    line = _one_line_failure("echo", "--driver", "nativ")
    assert "unknown driver 'nativ'" in line
    assert "did you mean 'native'?" in line
    assert "native, portable, aio, iocp, sim" in line


def test_unavailable_and_in_memory_drivers_say_why() -> None:
    assert "Windows only" in _one_line_failure("echo", "--driver", "iocp")
    assert "in-memory" in _one_line_failure("echo", "--driver", "sim")


def test_bad_config_key_names_it(tmp_path: Path) -> None:
    config = tmp_path / "net.toml"
    config.write_text('recv_buff = "4MiB"\ntos = 300\n')
    for command in ("echo", "probe"):
        line = _one_line_failure(command, "--config", str(config))
        assert "recv_buff" in line
        assert "did you mean 'recv_buf'?" in line
        assert "tos=300" in line


def test_config_file_problems(tmp_path: Path) -> None:
    assert "not found" in _one_line_failure("probe", "--config", str(tmp_path / "missing.toml"))
    broken = tmp_path / "broken.toml"
    broken.write_text("recv_buf = \n")
    assert "not valid TOML" in _one_line_failure("probe", "--config", str(broken))
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('recv_buf = "4MiB"  # café\n'.encode("latin-1"))
    for command in ("probe", "echo"):
        assert "is not UTF-8" in _one_line_failure(command, "--config", str(latin1))


def test_usage_errors_are_one_line_too() -> None:
    assert "invalid int value" in _one_line_failure("echo", "--workers", "many")
    assert "--workers must be at least 1" in _one_line_failure("echo", "--workers", "0")
    assert "required" in _one_line_failure()
    assert "invalid choice" in _one_line_failure("serve")


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT here")
@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM], ids=["udp", "tcp"])
def test_a_port_another_process_serves_with_reuseport_is_refused(kind: int) -> None:
    # SO_REUSEPORT on both sides would let the bind succeed and split that server's traffic.
    with socket.socket(socket.AF_INET, kind) as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            other.listen(1)
        flag = "--udp" if kind == socket.SOCK_DGRAM else "--tcp"
        line = _one_line_failure("echo", flag, f"127.0.0.1:{other.getsockname()[1]}")
        assert "another process already serves this port" in line
        assert "--share-port" in line


def test_too_many_workers() -> None:
    wanted = usable_cpu_count() + 1
    assert "CPUs" in _one_line_failure("echo", "--workers", str(wanted))


def test_bench_argument_errors() -> None:
    assert "unknown name 'quic' in --peers" in _one_line_failure("bench", "--peers", "quic")
    assert "--size must be" in _one_line_failure("bench", "--size", "8")
    assert "--baseline 'asyncio' is not measured" in _one_line_failure(
        "bench", "--peers", "stdlib", "--baseline", "asyncio"
    )
    assert "--drivers names nothing" in _one_line_failure("bench", "--drivers", "")
    assert "--peers names nothing" in _one_line_failure("bench", "--peers", " , ")


def test_bench_output_files_are_checked_before_measuring(tmp_path: Path) -> None:
    # Fails in about a second: nothing is measured first (the default run takes a minute).
    missing = tmp_path / "no" / "such" / "bench.json"
    assert "does not exist" in _one_line_failure("bench", "--json", str(missing))
    assert "is a folder" in _one_line_failure("bench", "--scenario", "gso", "--json", str(tmp_path))
