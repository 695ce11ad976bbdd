"""The examples in the compiled modules' docstrings run (pytest's doctest plugin cannot see .so)."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from tests.drivers.native.native_helpers import WAIT  # first: it skips this module off Linux

# isort: split
from horizon_drivers import native
from horizon_drivers.bench import _loadgen as loadgen
from horizon_drivers.native.linux import batch_states, epoll, tcp, udp


@pytest.mark.parametrize(
    "module", [udp, tcp, epoll, batch_states, loadgen, native], ids=lambda m: m.__name__
)
def test_docstring_examples_run(module: ModuleType) -> None:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder().find(module, module.__name__):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0
    assert results.attempted > 0
    assert WAIT > 0


@pytest.mark.parametrize("module", [udp, tcp, epoll, batch_states, loadgen])
def test_every_public_name_is_documented(module: ModuleType) -> None:
    assert (module.__doc__ or "").strip()
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, type) or callable(obj):
            assert (obj.__doc__ or "").strip(), f"{module.__name__}.{name} has no docstring"
