"""The one checkpoint every socket operation takes, as cheap as the running backend allows.

Rules this module obeys:

* Every operation of :mod:`horizon_drivers.aio` awaits exactly one checkpoint *before* it touches
  the kernel, then makes nonblocking attempts, waiting for readiness between them. There is no
  await after data was taken or sent, so a cancellation (anyio's, or a bare
  ``asyncio.Task.cancel``) can only land before anything happened: nothing is lost, nothing is
  sent twice, nothing needs a shield.
* The checkpoint is the backend's own: a bare yield on asyncio (what ``asyncio.sleep(0)`` and
  anyio's asyncio ``checkpoint()`` do, without the dispatch), ``trio.lowlevel.checkpoint`` on trio,
  and anyio's generic one otherwise. It is chosen once, when a socket is created, because anyio
  objects belong to the event loop that made them. (anyio's ``cancel_shielded_checkpoint`` costs
  7-9 µs per call on asyncio; this costs 2-3.)

Example::

    checkpoint = checkpoint_for_running_loop()
    await checkpoint()          # may raise the backend's cancellation exception
"""

from __future__ import annotations

import asyncio
import importlib
import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import anyio.lowlevel

__all__ = ["Checkpoint", "checkpoint_for_running_loop"]

#: A zero-argument awaitable factory: one scheduling point that cancellation can interrupt.
Checkpoint = Callable[[], Awaitable[None]]


@types.coroutine
def _asyncio_checkpoint() -> Generator[None, Any, None]:
    # A bare yield is asyncio's scheduling point (asyncio.sleep(0) is exactly this): the task is
    # rescheduled and any pending Task.cancel() is thrown in here.
    yield


def checkpoint_for_running_loop() -> Checkpoint:
    """The cheapest correct checkpoint for the event loop running in this thread.

    Example::

        checkpoint = checkpoint_for_running_loop()
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return _asyncio_checkpoint
    try:
        # Imported by name: trio is optional, and older releases ship no type information.
        trio_lowlevel = importlib.import_module("trio.lowlevel")
        trio_lowlevel.current_task()
    except (ImportError, RuntimeError):
        return anyio.lowlevel.checkpoint
    checkpoint: Checkpoint = trio_lowlevel.checkpoint
    return checkpoint
