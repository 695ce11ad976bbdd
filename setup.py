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
from setuptools.command.build_py import build_py

NATIVE = Path("horizon_drivers") / "native"
# The stubs of the compiled modules live in typings/ (mypy_path) for the repository's own checks;
# wheels carry them beside the extensions so installed users type-check against them too (PEP 561).
STUBS = Path("typings") / NATIVE

# Module-name prefix -> the platform it compiles for.
PLATFORM_PREFIXES = {"_linux_": "linux", "_win_": "win32"}


def _platform_of(stem: str) -> str:
    wanted = next((p for prefix, p in PLATFORM_PREFIXES.items() if stem.startswith(prefix)), None)
    if wanted is None:
        raise RuntimeError(f"{stem}: name must start with one of {sorted(PLATFORM_PREFIXES)}")
    return wanted


def _builds_here(stem: str) -> bool:
    target = "win32" if sys.platform == "win32" else sys.platform
    return target.startswith(_platform_of(stem))


class BuildPyWithStubs(build_py):
    """build_py that also puts the stub of every extension built here next to it."""

    def run(self) -> None:
        super().run()
        for stub in sorted(STUBS.glob("*.pyi")):
            if not _builds_here(stub.stem):
                continue
            if not (NATIVE / f"{stub.stem}.pyx").exists():
                raise RuntimeError(f"{stub}: no {stub.stem}.pyx for this stub")
            target = Path(self.build_lib) / NATIVE / stub.name
            self.mkpath(str(target.parent))
            self.copy_file(str(stub), str(target))


def _extensions() -> list[Extension]:
    exts: list[Extension] = []
    for pyx in sorted(NATIVE.glob("*.pyx")):
        stem = pyx.stem
        wanted = _platform_of(stem)
        if not _builds_here(stem):
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


setup(ext_modules=_extensions(), cmdclass={"build_py": BuildPyWithStubs})
