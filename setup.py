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
# Each folder of compiled modules and the platform it builds for: the drivers under native/ (one
# folder a platform), and the benchmark's load generator, which is Linux C but no driver.
COMPILED_FOLDERS = {
    NATIVE / "linux": "linux",
    NATIVE / "windows": "win32",
    Path("horizon_drivers") / "bench": "linux",
}
# The stubs of the compiled modules live in typings/ (mypy_path) for the repository's own checks;
# wheels carry them beside the extensions so installed users type-check against them too (PEP 561).
STUBS = Path("typings")


def _builds_here(platform: str) -> bool:
    target = "win32" if sys.platform == "win32" else sys.platform
    return target.startswith(platform)


def _sources_built_here() -> list[Path]:
    return [
        pyx
        for folder, platform in COMPILED_FOLDERS.items()
        if _builds_here(platform)
        for pyx in sorted(folder.glob("*.pyx"))
    ]


class BuildPyWithStubs(build_py):
    """build_py that also puts the stub of every extension built here next to it."""

    def run(self) -> None:
        super().run()
        for pyx in _sources_built_here():
            stub = STUBS / pyx.with_suffix(".pyi")
            if not stub.exists():
                raise RuntimeError(f"{pyx}: no stub {stub} for this extension")
            target = Path(self.build_lib) / pyx.with_suffix(".pyi")
            self.mkpath(str(target.parent))
            self.copy_file(str(stub), str(target))


def _extensions() -> list[Extension]:
    exts: list[Extension] = []
    for pyx in _sources_built_here():
        windows = pyx.parent == NATIVE / "windows"
        exts.append(
            Extension(
                ".".join(pyx.with_suffix("").parts),
                [str(pyx)],
                libraries=["ws2_32"] if windows else [],
                define_macros=[] if windows else [("_GNU_SOURCE", "1")],
                extra_compile_args=[] if windows else ["-O2"],
            )
        )
    if not exts:
        return []
    from Cython.Build import cythonize

    return cythonize(
        exts,
        language_level=3,
        compiler_directives={
            # Bounds and wraparound checks stay on everywhere: indexes come from users and the
            # kernel, and the hot loops walk C arrays by counts the kernel returned.
            "embedsignature": True,
            "binding": False,
        },
        annotate=bool(os.environ.get("HORIZON_CYTHON_ANNOTATE")),
    )


setup(ext_modules=_extensions(), cmdclass={"build_py": BuildPyWithStubs})
