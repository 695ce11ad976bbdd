"""Stub for the compiled module horizon_drivers/native/linux/batch_states.pyx.

The core's bulk receive transitions in C; the Linux driver cimports the C functions, and these
Python entry points exist for tests and tools.
"""

from horizon_core.buffers import Batch

__all__: list[str]

def begin(batch: Batch) -> tuple[int, int]: ...
def commit(batch: Batch, filled: int) -> None: ...
