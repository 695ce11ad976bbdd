"""Build the compiled drivers; all metadata lives in pyproject.toml.

Which extensions build depends on the target platform: the Linux driver (epoll,
recvmmsg/sendmmsg) only on Linux, the IOCP driver only on Windows. Everywhere else the
package installs pure Python and the portable, anyio and sim drivers still work.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup

NATIVE = Path("horizon_drivers") / "native"

# Module-name prefix -> the platform it compiles for.
PLATFORM_PREFIXES = {"_linux_": "linux", "_win_": "win32"}


def _extensions() -> list[Extension]:
    target = "win32" if sys.platform == "win32" else sys.platform
    exts: list[Extension] = []
    for pyx in sorted(NATIVE.glob("*.pyx")):
        stem = pyx.stem
        wanted = next((p for prefix, p in PLATFORM_PREFIXES.items() if stem.startswith(prefix)), None)
        if wanted is None:
            raise RuntimeError(f"{pyx}: name must start with one of {sorted(PLATFORM_PREFIXES)}")
        if not target.startswith(wanted):
            continue
        libraries = ["ws2_32"] if wanted == "win32" else []
        exts.append(
            Extension(
                f"horizon_drivers.native.{stem}",
                [str(pyx)],
                libraries=libraries,
                define_macros=[("_GNU_SOURCE", "1")] if wanted == "linux" else [],
                extra_compile_args=["-O2"] if wanted == "linux" else [],
            )
        )
    if not exts:
        return []
    from Cython.Build import cythonize

    return cythonize(
        exts,
        language_level=3,
        compiler_directives={
            # Bounds and wraparound checks stay on by default; hot loops that index
            # C arrays of kernel results opt out locally after validating counts.
            "embedsignature": True,
            "binding": False,
        },
        annotate=bool(os.environ.get("HORIZON_CYTHON_ANNOTATE")),
    )


setup(ext_modules=_extensions())
