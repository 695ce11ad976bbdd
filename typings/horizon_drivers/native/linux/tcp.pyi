"""Stub for the compiled module horizon_drivers/native/linux/tcp.pyx."""

import socket
from collections.abc import Sequence
from typing import Final, Self

from horizon_drivers.native.linux.descriptor import OwnedDescriptor
from typing_extensions import disjoint_base

from horizon_core.addresses import SocketAddress
from horizon_core.config import NetConfig
from horizon_core.contract import AddressLike, BytesLike, WritableBuffer
from horizon_core.options import OptionReport
from horizon_core.stats import StatsSnapshot

__all__ = ["MAX_IOV", "TcpListener", "TcpStream"]

MAX_IOV: Final[int]

# A cdef class: its C layout cannot be combined with another in a subclass (PEP 800).
@disjoint_base
class TcpStream(OwnedDescriptor):
    def __init__(
        self,
        sock: socket.socket,
        options: OptionReport,
        config: NetConfig | None = None,
        *,
        connecting: bool = False,
    ) -> None: ...
    @classmethod
    def connect(cls, address: AddressLike, config: NetConfig | None = None) -> Self: ...
    @property
    def peer_address(self) -> SocketAddress: ...
    def finish_connect(self) -> bool: ...
    def recv_into(self, buffer: WritableBuffer) -> int: ...
    def send(self, data: BytesLike) -> int: ...
    def send_vectored(self, buffers: Sequence[BytesLike]) -> int: ...
    @property
    def stats(self) -> StatsSnapshot: ...
    def shutdown(self, how: int = ...) -> None: ...
    def shutdown_write(self) -> None: ...

# No C fields of its own: its disjoint base is OwnedDescriptor.
class TcpListener(OwnedDescriptor):
    def __init__(
        self, sock: socket.socket, options: OptionReport, config: NetConfig | None = None
    ) -> None: ...
    @classmethod
    def bind(cls, address: AddressLike, config: NetConfig | None = None) -> Self: ...
    def accept_nonblocking(self) -> tuple[TcpStream, SocketAddress]: ...
    def accept_many(self, max_count: int = 64) -> list[tuple[TcpStream, SocketAddress]]: ...
