"""Stub for the compiled module horizon_drivers/bench/_reference.pyx (with its .pxi includes)."""

from typing import Any, Final

__all__ = ["MAX_BATCH", "MAX_SPIN_US", "TCP_BUFFER", "UDP_SLOT", "serve_tcp", "serve_udp"]

MAX_BATCH: Final[int]
MAX_SPIN_US: Final[int]
UDP_SLOT: Final[int]
TCP_BUFFER: Final[int]

def serve_udp(fd: int, stop_fd: int, *, batch: int = 64, spin_us: int = 0) -> dict[str, Any]: ...
def serve_tcp(listener: int, stop_fd: int, *, spin_us: int = 0) -> dict[str, Any]: ...
