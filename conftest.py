"""pytest's collection rules for the doctests of the shipped packages (``--doctest-modules``).

Kept at the repository root, outside the packages, so no test plumbing ships in a wheel. The iocp
driver imports only on Windows (anywhere else its ImportError is the documented behaviour), so
its modules are collected on Windows only; on Linux ``.ci/wine/run`` runs them under a Windows
CPython in Wine (rootdir is this repository, so this file applies there too).
"""

from __future__ import annotations

import sys

_PLATFORM: str = sys.platform
collect_ignore = [] if _PLATFORM == "win32" else ["horizon_drivers/iocp"]
