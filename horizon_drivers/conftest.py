"""pytest's collection rules for this package's doctests (``--doctest-modules``).

The iocp driver imports only on Windows (anywhere else its ImportError is the documented
behaviour), so its modules are collected on Windows only; on Linux ``.ci/wine/run`` runs them
under a Windows CPython in Wine.
"""

from __future__ import annotations

import sys

_PLATFORM: str = sys.platform
collect_ignore = [] if _PLATFORM == "win32" else ["iocp"]
