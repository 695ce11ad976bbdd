"""Echo servers written the way people write them without Horizon: what ``horizon bench`` compares.

Each peer is the idiomatic server for its library, with that library's defaults, so the ratios in
the bench table answer "what do I gain over what I would have written":

* ``stdlib`` — a blocking ``recvfrom``/``sendto`` loop; TCP with a thread per connection;
* ``asyncio`` — ``DatagramProtocol`` / ``Protocol`` on the default event loop;
* ``uvloop`` — the same protocols on uvloop (when installed);
* ``anyio`` — ``create_udp_socket`` / ``create_tcp_listener`` on anyio's asyncio backend;
* ``c`` — no library: the C reference server of :mod:`horizon_drivers.bench.reference`
  (epoll with recvmmsg/sendmmsg for UDP, a level-triggered epoll echo for TCP), the machine's
  limit every row is also compared with. Built with the package on Linux; unavailable elsewhere.

``serve_peer(..., backend=)`` runs the ``anyio`` peer on another anyio backend (``uvloop``:
asyncio on uvloop; ``trio``), and ``buffer=`` gives every UDP peer's socket the same
SO_RCVBUF/SO_SNDBUF a Horizon server gets, for the scenarios that compare like with like.

A peer serves until its process is terminated: bench runs each in a process of its own and ends
it with SIGTERM, so peers carry no shutdown logic that would make them less idiomatic.

Example:
    >>> peer_status("stdlib")
    PeerStatus(name='stdlib', available=True, reason='')
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Literal, cast

import attrs

from horizon_core.addresses import SocketAddress
from horizon_drivers.bench.reference import REFERENCE

__all__ = [
    "BACKENDS",
    "PEER_NAMES",
    "PeerStatus",
    "Protocol",
    "anyio_run",
    "backend_status",
    "peer_status",
    "serve_peer",
]

#: Which echo a server answers.
Protocol = Literal["udp", "tcp"]

#: The peers bench knows, in the order tables list them.
PEER_NAMES: tuple[str, ...] = ("c", "stdlib", "asyncio", "uvloop", "anyio")

#: The anyio backends bench runs on: asyncio, asyncio on uvloop, trio.
BACKENDS: tuple[str, ...] = ("asyncio", "uvloop", "trio")

#: Called once the server is bound, with the address it listens on (the real port for port 0).
ReadyCallback = Callable[[SocketAddress], None]

_RECV_SIZE = 65536


@attrs.frozen
class PeerStatus:
    """Whether a peer can run here; ``reason`` says why not.

    Example:
        >>> PeerStatus("uvloop", False, "uvloop is not installed").available
        False
    """

    name: str
    available: bool
    reason: str = ""


#: The peers and backends that need a package bench does not depend on.
_OPTIONAL_INSTALLS = frozenset({"uvloop", "trio"})


def _status(kind: str, name: str, known: tuple[str, ...]) -> PeerStatus:
    """``name``'s status among the ``known`` ones of ``kind``: unavailable when not installed."""
    if name not in known:
        raise ValueError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(known)}")
    if name in _OPTIONAL_INSTALLS and importlib.util.find_spec(name) is None:
        return PeerStatus(name, False, f"{name} is not installed (pip install {name})")
    return PeerStatus(name, True)


def peer_status(name: str) -> PeerStatus:
    """Whether peer ``name`` can run on this host. ValueError for unknown names.

    Example:
        >>> peer_status("asyncio").available
        True
    """
    status = _status("peer", name, PEER_NAMES)
    if name == REFERENCE:
        from horizon_drivers.bench.reference import reference_status

        built, reason = reference_status()
        if not built:
            return PeerStatus(name, False, reason)
    return status


def backend_status(backend: str) -> PeerStatus:
    """Whether anyio ``backend`` can run here (uvloop and trio are optional installs).

    Example:
        >>> backend_status("asyncio").available
        True
    """
    return _status("backend", backend, BACKENDS)


def anyio_run(main: Callable[[], Awaitable[object]], backend: str) -> None:
    """``anyio.run(main)`` on ``backend`` (``uvloop``: the asyncio backend on uvloop)."""
    import anyio

    if backend == "uvloop":
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(main, backend=backend)


def serve_peer(
    name: str,
    protocol: Protocol,
    address: SocketAddress,
    ready: ReadyCallback,
    *,
    backend: str = "asyncio",
    buffer: int | None = None,
) -> None:
    """Serve ``protocol`` echo on ``address`` with peer ``name`` until the process ends.

    Example:
        >>> serve_peer("nope", "udp", SocketAddress.parse("127.0.0.1:0"), print)
        Traceback (most recent call last):
        ...
        ValueError: unknown peer 'nope'; known peers: c, stdlib, asyncio, uvloop, anyio
    """
    status = peer_status(name)
    if not status.available:
        raise RuntimeError(f"peer {name} is unavailable: {status.reason}")
    if name == REFERENCE:
        from horizon_drivers.bench.reference import serve_reference

        serve_reference(protocol, address, ready, buffer=buffer)
    elif name == "stdlib":
        if protocol == "udp":
            _serve_stdlib_udp(address, ready, buffer)
        else:
            _serve_stdlib_tcp(address, ready)
    elif name == "asyncio":
        asyncio.run(_serve_asyncio(protocol, address, ready, buffer))
    elif name == "uvloop":
        import uvloop

        uvloop.run(_serve_asyncio(protocol, address, ready, buffer))
    else:
        anyio_run(lambda: _serve_anyio(protocol, address, ready, buffer), backend)


def _family(address: SocketAddress) -> socket.AddressFamily:
    return socket.AF_INET if address.family == 4 else socket.AF_INET6


def _bound(sock: socket.socket) -> SocketAddress:
    return SocketAddress.from_sockaddr(sock.getsockname())


def _set_buffers(sock: Any, buffer: int | None) -> None:
    # A socket or an event loop's stand-in for one: both have setsockopt.
    if buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)


# -- stdlib -------------------------------------------------------------------------------------


def _serve_stdlib_udp(address: SocketAddress, ready: ReadyCallback, buffer: int | None) -> None:
    with socket.socket(_family(address), socket.SOCK_DGRAM) as sock:
        _set_buffers(sock, buffer)
        sock.bind(address.to_sockaddr())
        ready(_bound(sock))
        while True:
            data, peer = sock.recvfrom(_RECV_SIZE)
            sock.sendto(data, peer)


def _serve_stdlib_tcp(address: SocketAddress, ready: ReadyCallback) -> None:
    with socket.socket(_family(address), socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address.to_sockaddr())
        listener.listen(128)
        ready(_bound(listener))
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=_stdlib_tcp_connection, args=(conn,), daemon=True).start()


def _stdlib_tcp_connection(conn: socket.socket) -> None:
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while chunk := conn.recv(_RECV_SIZE):
                conn.sendall(chunk)
        except OSError:
            pass  # the client reset the connection: that ends this echo, nothing more


# -- asyncio and uvloop -------------------------------------------------------------------------


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector transport does not subclass DatagramTransport on 3.11; it has its API.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.transport.sendto(data, addr)


class _TcpEcho(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    # Backpressure: stop reading while the peer is not reading our echo, as the docs advise.
    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


async def _serve_asyncio(
    protocol: Protocol, address: SocketAddress, ready: ReadyCallback, buffer: int | None
) -> None:
    loop = asyncio.get_running_loop()
    host, port = str(address.host), address.port
    if protocol == "udp":
        transport, _ = await loop.create_datagram_endpoint(_UdpEcho, local_addr=(host, port))
        _set_buffers(transport.get_extra_info("socket"), buffer)
        ready(SocketAddress.from_sockaddr(transport.get_extra_info("sockname")))
    else:
        server = await loop.create_server(_TcpEcho, host, port, reuse_address=True)
        ready(SocketAddress.from_sockaddr(server.sockets[0].getsockname()))
    await asyncio.Event().wait()


# -- anyio --------------------------------------------------------------------------------------


async def _serve_anyio(
    protocol: Protocol, address: SocketAddress, ready: ReadyCallback, buffer: int | None
) -> None:
    import anyio
    from anyio.abc import SocketAttribute, SocketStream

    host, port = str(address.host), address.port
    if protocol == "udp":
        async with await anyio.create_udp_socket(local_host=host, local_port=port) as udp:
            # anyio has no way to set them before bind: after it, through the raw socket.
            _set_buffers(udp.extra(SocketAttribute.raw_socket), buffer)
            ready(_from_anyio(udp.extra(SocketAttribute.local_address)))
            async for data, peer in udp:
                await udp.sendto(data, peer[0], peer[1])
        return

    async def echo(stream: SocketStream) -> None:
        async with stream:
            try:
                async for chunk in stream:
                    await stream.send(chunk)
            except anyio.BrokenResourceError:
                pass  # the client reset the connection

    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    ready(_from_anyio(listener.extra(SocketAttribute.local_address)))
    await listener.serve(echo)


def _from_anyio(sockaddr: tuple[str, int] | str) -> SocketAddress:
    # anyio types local_address as str too, for UNIX sockets; ours are always IP.
    assert isinstance(sockaddr, tuple)
    return SocketAddress.from_sockaddr(sockaddr)
