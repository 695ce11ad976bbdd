"""Stub for the compiled module horizon_drivers/native/linux/address.pyx.

Its real API is C-level (cimported through ``native/linux/address.pxd``); Python sees a test hook only.
"""

from horizon_core.addresses import SocketAddress, SocketAddressLike

__all__: list[str]

def _sockaddr_roundtrip(address: SocketAddressLike, family: int) -> SocketAddress | None: ...
