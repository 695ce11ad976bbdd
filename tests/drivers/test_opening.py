"""Opening sockets from the plan: order, nonblocking/CLOEXEC, addresses, refusals, accepted streams."""

from __future__ import annotations

import errno
import os
import select
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from horizon_core.config import NetConfig
from horizon_core.errors import ConfigError, OptionError
from horizon_core.options import Observation, OptionSetting, OptionStatus
from horizon_drivers import opening
from horizon_drivers.opening import (
    configure_accepted,
    dual_stack_config,
    open_tcp_listener,
    open_tcp_stream,
    open_udp,
    open_udp_dual_stack,
)
from horizon_drivers.sockopts import apply_settings

ROOT = Path(__file__).resolve().parents[2]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux behaviour")


def _is_nonblocking_and_cloexec(sock: socket.socket) -> bool:
    return sock.gettimeout() == 0.0 and not os.get_inheritable(sock.fileno())


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1"])
def test_udp_binds_any_address(host: str) -> None:
    sock, report = open_udp((host, 0), NetConfig())
    with sock:
        assert sock.getsockname()[0] == host
        assert _is_nonblocking_and_cloexec(sock)
        assert report["reuse_addr"].status is OptionStatus.APPLIED


def test_ephemeral_udp_ports_are_never_shared() -> None:
    # With SO_REUSEADDR/SO_REUSEPORT set before bind, port 0 can land on a port another socket
    # already holds; the driver sets them after bind for port 0, so every port is distinct.
    socks = [open_udp("127.0.0.1:0", NetConfig())[0] for _ in range(300)]
    try:
        ports = [s.getsockname()[1] for s in socks]
        assert len(set(ports)) == len(ports)
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) for s in socks)
        # ... and a second socket can still join a port explicitly.
        joiner, _ = open_udp(("127.0.0.1", ports[0]), NetConfig())
        joiner.close()
    finally:
        for s in socks:
            s.close()


def test_dual_stack_turns_v6only_off() -> None:
    sock, report = open_udp_dual_stack(0, NetConfig())
    with sock:
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        assert report["ipv6_only"].effective == 0
    with pytest.raises(ConfigError) as info:
        dual_stack_config(NetConfig(ipv6_only=True))
    assert info.value.fields == ("ipv6_only",)


def test_listener_uses_the_backlog_and_any_address() -> None:
    sock, report = open_tcp_listener("127.0.0.2:0", NetConfig(tcp_backlog=5))
    with sock:
        assert sock.getsockname()[0] == "127.0.0.2"
        assert _is_nonblocking_and_cloexec(sock)
        assert report["tcp_nodelay"].effective == 1
        if shutil.which("ss"):
            port = sock.getsockname()[1]
            out = subprocess.run(
                ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
            ).stdout.split()
            assert out[2] == "5"


def test_stream_connect_is_nonblocking_and_accepted_streams_are_configured() -> None:
    config = NetConfig(recv_buf=200_000, tos=0x20)
    listener, _ = open_tcp_listener("127.0.0.1:0", config)
    with listener:
        client, report = open_tcp_stream(listener.getsockname(), config)
        with client:
            assert _is_nonblocking_and_cloexec(client)
            assert report["tcp_nodelay"].effective == 1
            assert select.select([listener], [], [], 5)[0]
            accepted, _ = listener.accept()
            accepted.setblocking(True)  # as if a careless caller left it blocking
            with accepted:
                accepted_report = configure_accepted(accepted, config)
                assert accepted.gettimeout() == 0.0
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
                assert (
                    accepted.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                    == accepted_report["recv_buf"].effective
                )
                assert accepted_report["tcp_quickack"].status is OptionStatus.APPLIED


def test_connect_to_a_closed_port_is_reported_later_not_raised() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
    sock, _ = open_tcp_stream(address, NetConfig())
    with sock:
        select.select([], [sock], [], 5)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED


def _refusing(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make apply_settings observe EPERM for option ``name`` (an honest stand-in for the kernel)."""
    real = apply_settings

    def apply(sock: socket.socket, settings: tuple[OptionSetting, ...]) -> dict[str, Observation]:
        observed = real(sock, settings)
        if name in observed:
            observed[name] = Observation(name, error=errno.EPERM)
        return observed

    monkeypatch.setattr(opening, "apply_settings", apply)


def test_required_refusal_closes_the_socket_before_bind(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[socket.socket] = []
    real_socket = socket.socket

    def spy(*args: object, **kwargs: object) -> socket.socket:
        sock = real_socket(*args, **kwargs)  # type: ignore[arg-type]
        opened.append(sock)
        return sock

    monkeypatch.setattr(socket, "socket", spy)
    _refusing(monkeypatch, "SO_BUSY_POLL")
    with pytest.raises(OptionError) as info:
        open_udp("127.0.0.1:0", NetConfig(busy_poll=50))
    assert (info.value.option, info.value.field) == ("SO_BUSY_POLL", "busy_poll")
    assert [s.fileno() for s in opened] == [-1]  # closed, never leaked


def test_best_effort_refusal_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    _refusing(monkeypatch, "SO_BUSY_POLL")
    config = NetConfig(busy_poll=50, best_effort=frozenset({"busy_poll"}))
    sock, report = open_udp("127.0.0.1:0", config)
    with sock:
        assert report["busy_poll"].status is OptionStatus.REFUSED
        assert "CAP_NET_ADMIN" in report["busy_poll"].reason


def test_accepted_stream_is_closed_when_a_required_option_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listener, _ = open_tcp_listener("127.0.0.1:0", NetConfig())
    with listener:
        client, _ = open_tcp_stream(listener.getsockname(), NetConfig())
        with client:
            select.select([listener], [], [], 5)
            accepted, _ = listener.accept()
            _refusing(monkeypatch, "TCP_NODELAY")
            with pytest.raises(OptionError):
                configure_accepted(accepted, NetConfig(tcp_nodelay=False))
            assert accepted.fileno() == -1


@linux_only
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv(1)")
@pytest.mark.skipif(os.geteuid() != 0, reason="dropping a capability needs root to hold it first")
def test_kernel_refusal_without_cap_net_admin_raises_option_error() -> None:
    # The real kernel says EPERM: run a child without CAP_NET_ADMIN (root minus one capability,
    # so it can still read the interpreter) and ask for SO_PREFER_BUSY_POLL, which needs it.
    script = textwrap.dedent(
        """
        from horizon_core.config import NetConfig
        from horizon_core.errors import OptionError
        from horizon_drivers.opening import open_udp
        try:
            open_udp("127.0.0.1:0", NetConfig(prefer_busy_poll=True))
        except OptionError as exc:
            print(exc.option, exc.field, exc.errno)
        sock, report = open_udp(
            "127.0.0.1:0",
            NetConfig(prefer_busy_poll=True, best_effort=frozenset({"prefer_busy_poll"})),
        )
        print(report["prefer_busy_poll"].status.value)
        """
    )
    result = subprocess.run(
        ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", sys.executable, "-c",
         script],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "SO_PREFER_BUSY_POLL", "prefer_busy_poll", str(errno.EPERM), "refused"
    ]
