"""Stub for the compiled module horizon_drivers/native/_linux_loadgen.pyx."""

from typing import Any, Final

from horizon_core.contract import AddressLike

__all__ = ["MAX_WINDOW", "run_udp_load"]

MAX_WINDOW: Final[int]

def run_udp_load(
    target: AddressLike,
    *,
    duration: float = 2.0,
    window: int = 256,
    payload_size: int = 64,
    warmup: float = 0.5,
    sample_rtt: bool = False,
    busy_wait: bool = False,
    loss_timeout: float = 0.05,
    max_samples: int = 2000000,
    socket_buffer: int = 4194304,
) -> dict[str, Any]: ...
