"""The one place the version lives: setuptools reads it (``dynamic = ["version"]``), and
``horizon_core.__version__``, ``horizon_drivers.__version__`` and ``horizon --version`` show it."""

from __future__ import annotations

__version__ = "0.2.0.dev0"
