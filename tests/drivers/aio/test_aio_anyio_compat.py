"""The aio factories as a drop-in for anyio's: signatures, TLS, local binding, happy eyeballs and
error shapes, listeners, link-local scopes, no blocking calls in async paths, the README example.

Where a behaviour can be compared directly, the test runs anyio's own factory and Horizon's side by
side (``impl`` fixture) and asserts the same outcome. Loopback only; link-local addresses are tested
inside a private network namespace (``fe80::1`` on its own ``lo``), never on a real interface.
"""

from __future__ import annotations

import inspect
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import anyio._core._sockets as anyio_sockets
import pytest
import trustme
from anyio.abc import SocketAttribute, SocketListener
from anyio.streams.tls import TLSAttribute, TLSListener, TLSStream

import horizon_drivers.aio.tcp as tcp_module
from horizon_core.addresses import SocketAddress
from horizon_core.config import NetConfig
from horizon_core.options import KernelLimits, OptionReport
from horizon_drivers import aio, sockopts
from horizon_drivers.aio import HorizonAttribute, HorizonSocketStream
from horizon_drivers.aio.resolution import Resolved

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0
FACTORIES = ("connect_tcp", "create_tcp_listener", "create_udp_socket", "create_connected_udp_socket")
REPO = Path(__file__).resolve().parents[3]
ALL_FAILED = r"^All connection attempts failed$"


@pytest.fixture(params=["anyio", "horizon"])
def impl(request: pytest.FixtureRequest) -> SimpleNamespace:
    """anyio's four factories, or Horizon's: the same test must see the same outcome."""
    module: Any = anyio if request.param == "anyio" else aio
    return SimpleNamespace(name=request.param, **{name: getattr(module, name) for name in FACTORIES})


def _free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback on this host")


# --- 1. anyio's signatures, order and defaults; extras keyword-only ------------------------------


@pytest.mark.parametrize("name", FACTORIES)
def test_signature_is_anyios_then_keyword_only_extras(name: str) -> None:
    theirs = list(inspect.signature(getattr(anyio, name)).parameters.values())
    ours = list(inspect.signature(getattr(aio, name)).parameters.values())
    shape = [(p.name, p.kind, p.default) for p in theirs]
    assert [(p.name, p.kind, p.default) for p in ours[: len(theirs)]] == shape
    extras = ours[len(theirs) :]
    assert "config" in [p.name for p in extras]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not p.empty for p in extras)


async def test_anyio_call_forms_work_unchanged() -> None:
    # The calls issue 13 reported as TypeError / AttributeError.
    async with await aio.create_udp_socket(socket.AF_INET) as udp:
        assert udp.extra(SocketAttribute.family) == socket.AF_INET
        # The Horizon extras are still there on an object made the anyio way.
        assert isinstance(udp.extra(HorizonAttribute.options), OptionReport)
        assert udp.extra(HorizonAttribute.stats).datagrams_received == 0
        assert udp.extra(HorizonAttribute.batch_engine) in ("recvmmsg", "portable")
        port = udp.extra(SocketAttribute.local_port)
        async with await aio.create_connected_udp_socket("127.0.0.1", port) as client:
            assert client.extra(SocketAttribute.remote_port) == port
    async with await aio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(SocketAttribute.local_port)
        with anyio.fail_after(TIMEOUT):
            async with await aio.connect_tcp("127.0.0.1", port) as stream:
                assert isinstance(stream, HorizonSocketStream)


async def test_udp_without_family_or_host_is_refused_like_anyio(impl: SimpleNamespace) -> None:
    with pytest.raises(ValueError, match='Either "family" or "local_host" must be given'):
        await impl.create_udp_socket()


async def test_reuse_port_is_off_unless_the_call_or_an_explicit_config_asks() -> None:
    def reuse_port(obj: Any) -> int:
        value: int = obj.extra(SocketAttribute.raw_socket).getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        return value

    cases: list[tuple[dict[str, Any], int]] = [
        ({}, 0),
        ({"reuse_port": True}, 1),
        ({"config": NetConfig()}, 1),  # NetConfig() asks for it
        ({"config": NetConfig(reuse_port=False)}, 0),
        ({"config": NetConfig(reuse_port=False), "reuse_port": True}, 1),
    ]
    for kwargs, expected in cases:
        async with await aio.create_tcp_listener(local_host="127.0.0.1", **kwargs) as listener:
            assert reuse_port(listener.listeners[0]) == expected, kwargs
        async with await aio.create_udp_socket(local_host="127.0.0.1", **kwargs) as udp:
            assert reuse_port(udp) == expected, kwargs


async def test_backlog_is_the_calls_unless_left_at_anyios_default_with_a_config() -> None:
    config = NetConfig(tcp_backlog=64)
    cases: list[tuple[dict[str, Any], int]] = [
        ({}, 65535),
        ({"backlog": 10}, 10),
        ({"config": config}, 64),
        ({"config": config, "backlog": 10}, 10),
    ]
    for kwargs, expected in cases:
        async with await aio.create_tcp_listener(local_host="127.0.0.1", **kwargs) as multi:
            listener = multi.listeners[0]
            assert listener.extra(HorizonAttribute.config).tcp_backlog == expected, kwargs


# --- 2. TLS with anyio's TLSStream / TLSListener --------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context


@asynccontextmanager
async def tls_echo_server(
    server_context: ssl.SSLContext, standard_compatible: bool = True
) -> AsyncIterator[tuple[int, list[Any]]]:
    """A Horizon listener behind anyio's TLSListener that echoes reversed; yields (port, streams)."""
    served: list[Any] = []

    async def handle(stream: TLSStream) -> None:
        served.append(stream)
        async with stream:
            data = await stream.receive()
            await stream.send(data[::-1])

    multi = await aio.create_tcp_listener(local_host="127.0.0.1", config=NetConfig(tcp_nodelay=True))
    tls_listener = TLSListener(multi, server_context, standard_compatible=standard_compatible)
    async with tls_listener, anyio.create_task_group() as group:
        group.start_soon(tls_listener.serve, handle)
        yield multi.extra(SocketAttribute.local_port), served
        group.cancel_scope.cancel()


async def test_tls_client_and_listener_keep_horizon_extras(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async with tls_echo_server(server_context) as (port, served):
        with anyio.fail_after(TIMEOUT):
            stream = await aio.connect_tcp(
                "127.0.0.1", port, tls_hostname="localhost", ssl_context=client_context
            )
            async with stream:
                assert isinstance(stream, TLSStream)
                await stream.send(b"hello")
                assert await stream.receive() == b"olleh"
                assert isinstance(stream.transport_stream, HorizonSocketStream)
                assert isinstance(stream.extra(HorizonAttribute.options), OptionReport)
                assert stream.extra(HorizonAttribute.options)["tcp_nodelay"].effective == 1
                assert stream.extra(TLSAttribute.standard_compatible) is True
        (accepted,) = served
        assert isinstance(accepted, TLSStream)
        assert isinstance(accepted.transport_stream, HorizonSocketStream)
        assert accepted.extra(HorizonAttribute.config).tcp_nodelay is True


async def test_tls_hostname_defaults_to_remote_host_and_options_pass_through(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    # Both ends without the TLS close handshake (as HTTP wants it): tls_standard_compatible=False.
    async with tls_echo_server(server_context, standard_compatible=False) as (port, _served):
        with anyio.fail_after(TIMEOUT):
            # The certificate names "localhost": connecting by that name verifies ...
            async with await aio.connect_tcp(
                "localhost", port, ssl_context=client_context, tls_standard_compatible=False
            ) as stream:
                assert stream.extra(TLSAttribute.standard_compatible) is False
                await stream.send(b"ab")
                assert await stream.receive() == b"ba"
            # ... and by address it does not, as with anyio.
            with pytest.raises(ssl.SSLCertVerificationError):
                await aio.connect_tcp("127.0.0.1", port, ssl_context=client_context)


async def test_tls_true_uses_a_default_context_that_rejects_an_unknown_ca(
    server_context: ssl.SSLContext,
) -> None:
    async with tls_echo_server(server_context) as (port, _served):
        with anyio.fail_after(TIMEOUT), pytest.raises(ssl.SSLError):
            await aio.connect_tcp("localhost", port, tls=True)


# --- 3. local binding ------------------------------------------------------------------------------


async def test_connect_binds_local_host_and_port(impl: SimpleNamespace) -> None:
    local_port = _free_port("127.0.0.2")
    async with await aio.create_tcp_listener(local_host="127.0.0.1") as multi:
        port = multi.extra(SocketAttribute.local_port)
        with anyio.fail_after(TIMEOUT):
            client = await impl.connect_tcp("127.0.0.1", port, local_host="127.0.0.2", local_port=local_port)
            listener = multi.listeners[0]
            assert isinstance(listener, SocketListener)
            async with client, await listener.accept() as server:
                assert client.extra(SocketAttribute.local_address) == ("127.0.0.2", local_port)
                assert server.extra(SocketAttribute.remote_address) == ("127.0.0.2", local_port)


async def test_local_port_without_local_host_is_ignored_like_anyio(impl: SimpleNamespace) -> None:
    # anyio documents local_port as requiring local_host and ignores it alone; so does Horizon.
    local_port = _free_port()
    async with await aio.create_tcp_listener(local_host="127.0.0.1") as multi:
        port = multi.extra(SocketAttribute.local_port)
        with anyio.fail_after(TIMEOUT):
            async with await impl.connect_tcp("127.0.0.1", port, local_port=local_port) as client:
                assert client.extra(SocketAttribute.local_port) != local_port


async def test_local_host_of_another_family_fails_as_an_attempt(impl: SimpleNamespace) -> None:
    if not _has_ipv6():
        pytest.skip("no IPv6 loopback on this host")
    async with await aio.create_tcp_listener(local_host="127.0.0.1") as multi:
        port = multi.extra(SocketAttribute.local_port)
        with anyio.fail_after(TIMEOUT), pytest.raises(OSError, match=ALL_FAILED) as info:
            await impl.connect_tcp("127.0.0.1", port, local_host="::1")
        assert isinstance(info.value.__cause__, OSError)


@needs_ipv6
async def test_connect_binds_an_ipv6_local_host() -> None:
    async with await aio.create_tcp_listener(local_host="::1") as multi:
        port = multi.extra(SocketAttribute.local_port)
        with anyio.fail_after(TIMEOUT):
            async with await aio.connect_tcp("::1", port, local_host="::1") as client:
                assert client.extra(SocketAttribute.local_address)[0] == "::1"


# --- 4. happy eyeballs order, error shapes --------------------------------------------------------


def _answers(*hosts: str, port: int) -> list[Resolved]:
    result: list[Resolved] = []
    for host in hosts:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        result.append((family, socket.SOCK_STREAM, SocketAddress.parse(text)))
    return result


async def test_targets_follow_anyios_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # anyio: the first IPv6 answer first; the first IPv4 answer that comes *after* an IPv6 one
    # second; the rest in resolver order. (Odd: IPv4 answers before any IPv6 one do not count as
    # "first IPv4", so 10.0.0.3 jumps ahead of 10.0.0.1. Matched as anyio has it.)
    answers = _answers("10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2", "10.0.0.3", port=80)

    async def fake_lookup(*_args: object, **_kwargs: object) -> list[Resolved]:
        return answers

    monkeypatch.setattr(tcp_module, "lookup", fake_lookup)
    ordered = await tcp_module._targets("example.test", 80, socket.AF_UNSPEC)
    assert [str(a.host) for a in ordered] == ["fd00::1", "10.0.0.3", "10.0.0.1", "10.0.0.2", "fd00::2"]
    # Only IPv4 answers (or IPv4 before any IPv6 one was seen) keep the resolver's order.
    answers = _answers("10.0.0.1", "10.0.0.2", port=80)
    ordered = await tcp_module._targets("example.test", 80, socket.AF_UNSPEC)
    assert [str(a.host) for a in ordered] == ["10.0.0.1", "10.0.0.2"]


async def test_one_refused_address_raises_anyios_shape(impl: SimpleNamespace) -> None:
    port = _free_port()
    with anyio.fail_after(TIMEOUT), pytest.raises(OSError, match=ALL_FAILED) as info:
        await impl.connect_tcp("127.0.0.1", port)
    assert type(info.value) is OSError
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert info.value.__context__ is None


@pytest.mark.parametrize("delay", [0.25, 0.0])
async def test_many_refused_addresses_raise_anyios_shape(
    impl: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, delay: float
) -> None:
    port = _free_port()
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]

    async def fake_getaddrinfo(host: Any, port_: Any, **_kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (h, port_)) for h in hosts]

    # The same resolver answer for anyio (its module global) and Horizon (through anyio.getaddrinfo).
    monkeypatch.setattr(anyio_sockets, "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(anyio, "getaddrinfo", fake_getaddrinfo)
    with anyio.fail_after(TIMEOUT), pytest.raises(OSError, match=ALL_FAILED) as info:
        await impl.connect_tcp("refused.test", port, happy_eyeballs_delay=delay)
    cause = info.value.__cause__
    assert isinstance(cause, ExceptionGroup)
    assert str(cause).startswith("multiple connection attempts failed")
    assert len(cause.exceptions) == len(hosts)
    assert all(isinstance(exc, ConnectionRefusedError) for exc in cause.exceptions)


async def test_an_unknown_name_raises_gaierror_without_context(impl: SimpleNamespace) -> None:
    with anyio.fail_after(TIMEOUT), pytest.raises(socket.gaierror) as info:
        await impl.connect_tcp("horizon.invalid", 80)
    assert info.value.__context__ is None


# --- 5. listeners: the same number and families as anyio ----------------------------------------


def _listener_shape(multi: Any) -> list[tuple[int, str, int]]:
    shape = []
    for listener in multi.listeners:
        raw = listener.extra(SocketAttribute.raw_socket)
        v6only = -1
        if raw.family == socket.AF_INET6:
            v6only = raw.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        shape.append((int(raw.family), raw.getsockname()[0], v6only))
    return sorted(shape)


@pytest.mark.parametrize(
    ("local_host", "family"),
    [
        (None, socket.AF_UNSPEC),
        (None, socket.AF_INET),
        pytest.param(None, socket.AF_INET6, marks=needs_ipv6),
        ("localhost", socket.AF_UNSPEC),
        ("127.0.0.1", socket.AF_UNSPEC),
        pytest.param("::1", socket.AF_UNSPEC, marks=needs_ipv6),
    ],
)
async def test_listeners_match_anyios(local_host: str | None, family: Any) -> None:
    async with await anyio.create_tcp_listener(local_host=local_host, family=family) as theirs:
        expected = _listener_shape(theirs)
    async with await aio.create_tcp_listener(local_host=local_host, family=family) as ours:
        assert _listener_shape(ours) == expected
        assert len({each.extra(SocketAttribute.local_port) for each in ours.listeners}) == 1
        with anyio.fail_after(TIMEOUT):
            for listener in ours.listeners:
                host = str(listener.extra(SocketAttribute.local_address)[0])
                port = listener.extra(SocketAttribute.local_port)
                target = "::1" if host == "::" else "127.0.0.1" if host == "0.0.0.0" else host
                async with await aio.connect_tcp(target, port):
                    pass


# --- 6. link-local addresses with scope ids, in a private network namespace ----------------------

_NETNS_ENV = "HORIZON_TEST_LINK_LOCAL_NETNS"
_LINK_LOCAL = "fe80::1"
inside_netns = pytest.mark.skipif(
    os.environ.get(_NETNS_ENV) != "1", reason="runs inside the private network namespace only"
)


def test_link_local_paths_in_a_private_network_namespace() -> None:
    if os.environ.get(_NETNS_ENV) == "1":
        pytest.skip("already inside the namespace")
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("needs Linux and root for a private network namespace")
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2)")
    script = (
        f"ip link set lo up && ip -6 addr add {_LINK_LOCAL}/64 dev lo nodad && "
        f'exec "$0" -m pytest -q -p no:cacheprovider --timeout 120 "$1" -k "link_local and not namespace"'
    )
    env = {**os.environ, _NETNS_ENV: "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", script, sys.executable, __file__],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 and "Operation not permitted" in output and "unshare" in output:
        pytest.skip("this sandbox forbids network namespaces")
    assert result.returncode == 0, output
    # Both tests, both implementations, every backend; only anyio's own uvloop UDP case skips.
    assert " passed" in output, output
    assert "failed" not in output, output
    assert "error" not in output, output


@inside_netns
async def test_link_local_listen_connect_both_scope_forms(impl: SimpleNamespace) -> None:
    index = socket.if_nametoindex("lo")
    multi = await impl.create_tcp_listener(local_host=f"{_LINK_LOCAL}%lo")
    async with multi:
        assert len(multi.listeners) == 1
        host, port = multi.extra(SocketAttribute.local_address)
        assert host == f"{_LINK_LOCAL}%{index}"
        with anyio.fail_after(TIMEOUT):
            for target in (f"{_LINK_LOCAL}%lo", f"{_LINK_LOCAL}%{index}"):
                async with await impl.connect_tcp(target, port) as client:
                    assert client.extra(SocketAttribute.remote_address) == (host, port)
                    server = await multi.listeners[0].accept()
                    async with server:
                        await client.send(b"scoped")
                        assert await server.receive() == b"scoped"


@inside_netns
async def test_link_local_udp_bind_connect_send(impl: SimpleNamespace, anyio_backend: Any) -> None:
    if impl.name == "anyio" and anyio_backend[1].get("use_uvloop"):
        pytest.skip("anyio's own UDP on uvloop fails here: uvloop drops the scope id (EINVAL)")
    index = socket.if_nametoindex("lo")
    scoped = f"{_LINK_LOCAL}%{index}"
    async with await impl.create_udp_socket(local_host=f"{_LINK_LOCAL}%lo") as server:
        host, port = server.extra(SocketAttribute.local_address)
        assert host == scoped
        async with await impl.create_connected_udp_socket(f"{_LINK_LOCAL}%lo", port) as client:
            with anyio.fail_after(TIMEOUT):
                await client.send(b"ping")
                data, peer = await server.receive()
                assert data == b"ping"
                assert peer == client.extra(SocketAttribute.local_address)
                assert peer[0] == scoped
                for form in (scoped, f"{_LINK_LOCAL}%lo"):
                    await server.sendto(b"pong", form, peer[1])
                    assert await client.receive() == b"pong"


# --- 7. no blocking file I/O or DNS on the event loop ---------------------------------------------


def test_kernel_limits_are_read_once_and_refreshable(tmp_path: Path) -> None:
    (tmp_path / "rmem_max").write_text("1000\n")
    first = sockopts.read_kernel_limits(tmp_path)
    (tmp_path / "rmem_max").write_text("2000\n")
    assert sockopts.read_kernel_limits(tmp_path) is first  # cached: no second read
    sockopts.read_kernel_limits.cache_clear()
    try:
        assert sockopts.read_kernel_limits(tmp_path) == KernelLimits(rmem_max=2000, wmem_max=None)
    finally:
        sockopts.read_kernel_limits.cache_clear()
        sockopts.read_kernel_limits()  # prime again, as importing horizon_drivers.aio does


async def _open_everything(host: str) -> None:
    async with await aio.create_tcp_listener(local_host=host) as multi:
        port = multi.extra(SocketAttribute.local_port)
        listener = multi.listeners[0]
        assert isinstance(listener, SocketListener)
        async with await aio.connect_tcp(host, port), await listener.accept():
            pass
    async with (
        await aio.create_udp_socket(local_host=host) as udp,
        await aio.create_connected_udp_socket(host, udp.extra(SocketAttribute.local_port)) as client,
    ):
        await client.send(b"x")
        await udp.receive()


async def test_opening_sockets_reads_no_files(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_reads(path: Path) -> int | None:
        raise AssertionError(f"{path} read inside the event loop")

    monkeypatch.setattr(sockopts, "_read_int", no_reads)
    with anyio.fail_after(TIMEOUT):
        await _open_everything("127.0.0.1")


async def test_names_are_never_resolved_on_the_event_loop_thread(
    monkeypatch: pytest.MonkeyPatch, anyio_backend: Any
) -> None:
    loop_thread = threading.get_ident()
    calls: list[int] = []
    real_getaddrinfo: Callable[..., Any] = socket.getaddrinfo

    def watched(*args: Any, **kwargs: Any) -> Any:
        flags = kwargs.get("flags", args[5] if len(args) > 5 else 0)
        # trio first asks with AI_NUMERICHOST on the loop thread: that never touches DNS.
        if not flags & socket.AI_NUMERICHOST:
            calls.append(threading.get_ident())
        return real_getaddrinfo(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", watched)
    with anyio.fail_after(TIMEOUT):
        await _open_everything("localhost")
    if not anyio_backend[1].get("use_uvloop"):
        # uvloop resolves in libuv's thread pool, without socket.getaddrinfo; the others call it ...
        assert calls
    assert loop_thread not in calls  # ... in a worker thread every time


# --- 8. the README's before/after anyio program ---------------------------------------------------


def _readme_programs() -> tuple[str, str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")

    def block(marker: str) -> str:
        start = text.index("```python\n", text.index(marker)) + len("```python\n")
        return text[start : text.index("```", start)]

    before, after_header = block("<!-- anyio-before -->"), block("<!-- anyio-after -->")
    header_lines = after_header.splitlines(keepends=True)
    before_lines = before.splitlines(keepends=True)
    changed = [i for i, line in enumerate(header_lines) if line != before_lines[i]]
    # The README promises one changed line: the import of the four factories.
    assert len(changed) == 1
    assert header_lines[changed[0]].startswith("from horizon_drivers.aio import ")
    after = "".join(header_lines + before_lines[len(header_lines) :])
    return before, after


def test_readme_anyio_program_runs_the_same_with_horizon() -> None:
    before, after = _readme_programs()
    outputs = []
    for program in (before, after):
        result = subprocess.run(
            [sys.executable, "-c", program],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1] == "b'HELLO OVER TCP'\nb'HELLO OVER UDP'\n"
