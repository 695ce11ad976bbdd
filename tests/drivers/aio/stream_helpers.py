"""What the aio stream tests share: a connected stream pair and a read-counting socket."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from horizon_core.config import NetConfig
from horizon_drivers.aio import HorizonSocketListener, HorizonSocketStream, connect_tcp, create_tcp_listener

#: Seconds any one step of a pair's setup may take.
TIMEOUT = 5.0


@asynccontextmanager
async def pair(
    server_config: NetConfig | None = None,
) -> AsyncIterator[tuple[HorizonSocketStream, HorizonSocketStream]]:
    """A connected (client, server) pair on 127.0.0.1; the server side gets ``server_config``."""
    config = NetConfig() if server_config is None else server_config
    multi = await create_tcp_listener(local_host="127.0.0.1", config=config)
    listener = multi.listeners[0]
    assert isinstance(listener, HorizonSocketListener)
    async with multi:
        with anyio.fail_after(TIMEOUT):
            client = await connect_tcp("127.0.0.1", listener.local_address.port, config=NetConfig())
            server = await listener.accept()
        async with client, server:
            yield client, server


class CountingSocket:
    """Stands in for a stream's socket and counts its reads (socket methods cannot be patched)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.reads = 0

    def recv_into(self, buffer: bytearray) -> int:
        self.reads += 1
        return self._sock.recv_into(buffer)

    def recv(self, size: int) -> bytes:
        self.reads += 1
        return self._sock.recv(size)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)
