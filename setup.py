"""Build the compiled drivers; all metadata lives in pyproject.toml.

Which extensions build depends on the target platform: the Linux driver (epoll,
recvmmsg/sendmmsg) only on Linux, the IOCP driver only on Windows. Everywhere else the
package installs pure Python and the portable, anyio and sim drivers still work.

Where the C comes from:

* A git checkout compiles the ``.pyx`` files with Cython (a build requirement there, declared
  through ``setup_requires`` so pip's isolated build installs it).
* An sdist ships the C that Cython generated when the sdist was made (``python -m build --sdist``
  regenerates every platform's C first) and compiles that: no Cython needed. Set
  ``HORIZON_CYTHONIZE=1`` to regenerate the C from the shipped ``.pyx`` files instead.

The extensions are optional: a host without a working C compiler still installs the package,
with the pure drivers (portable, aio, sim); ``horizon probe`` then says the native driver is not
built. ``HORIZON_REQUIRE_EXTENSIONS=1`` (CI) makes a failed extension fail the build.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

NATIVE = Path("horizon_drivers") / "native"
# Each folder of compiled modules and the platform it builds for: the drivers under native/ (one
# folder a platform), and the benchmark's load generator, which is Linux C but no driver.
COMPILED_FOLDERS = {
    NATIVE / "linux": "linux",
    NATIVE / "windows": "win32",
    NATIVE / "uring": "linux",
    Path("horizon_drivers") / "bench": "linux",
}
# The stubs of the compiled modules live in typings/ (mypy_path) for the repository's own checks;
# wheels carry them beside the extensions so installed users type-check against them too (PEP 561).
STUBS = Path("typings")
# Only an unpacked sdist has PKG-INFO at its root (a checkout keeps it under *.egg-info/).
IN_SDIST = Path("PKG-INFO").exists()
USE_CYTHON = not IN_SDIST or os.environ.get("HORIZON_CYTHONIZE") == "1"
REQUIRE_EXTENSIONS = os.environ.get("HORIZON_REQUIRE_EXTENSIONS") == "1"
CYTHON_REQUIREMENT = "Cython>=3.0.10"
CYTHON_OPTIONS: dict[str, object] = {
    "language_level": 3,
    "compiler_directives": {
        # Bounds and wraparound checks stay on everywhere: indexes come from users and the
        # kernel, and the hot loops walk C arrays by counts the kernel returned.
        "embedsignature": True,
        "binding": False,
    },
}


def _builds_here(platform: str) -> bool:
    target = "win32" if sys.platform == "win32" else sys.platform
    return target.startswith(platform)


def _sources(*, every_platform: bool = False) -> list[Path]:
    return [
        pyx
        for folder, platform in COMPILED_FOLDERS.items()
        if every_platform or _builds_here(platform)
        for pyx in sorted(folder.glob("*.pyx"))
    ]


def _packages() -> list[str]:
    """The packages of this platform: another platform's compiled-module folder is left out."""
    elsewhere = [
        ".".join(folder.parts) for folder, platform in COMPILED_FOLDERS.items()
        if not _builds_here(platform) and (folder / "__init__.py").exists()
    ]
    return find_packages(include=["horizon_core*", "horizon_drivers*"], exclude=elsewhere)


class BuildPyWithStubs(build_py):
    """build_py that also puts the stub of every extension built here next to it."""

    def run(self) -> None:
        super().run()
        for pyx in _sources():
            stub = STUBS / pyx.with_suffix(".pyi")
            if not stub.exists():
                raise RuntimeError(f"{pyx}: no stub {stub} for this extension")
            target = Path(self.build_lib) / pyx.with_suffix(".pyi")
            self.mkpath(str(target.parent))
            self.copy_file(str(stub), str(target))


def _cythonize(extensions: list[Extension], **options: object) -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:
        raise RuntimeError(
            f"building from a checkout needs {CYTHON_REQUIREMENT} (pip installs it; with "
            f"--no-build-isolation run `pip install '{CYTHON_REQUIREMENT}'` first)"
        ) from None
    result: list[Extension] = cythonize(extensions, **CYTHON_OPTIONS, **options)
    return result


class BuildExtFromCythonOrC(build_ext):
    """build_ext that runs Cython first in a checkout (an sdist compiles its shipped C)."""

    def finalize_options(self) -> None:
        # Cythonize before setuptools finalizes: it marks each Extension object it finalizes
        # (for example whether it needs a stub loader), and cythonize returns new objects.
        modules = self.distribution.ext_modules
        if USE_CYTHON and modules:
            modules[:] = _cythonize(
                modules,
                force=bool(self.force),
                annotate=bool(os.environ.get("HORIZON_CYTHON_ANNOTATE")),
            )
        super().finalize_options()


class SdistWithC(sdist):
    """sdist that first regenerates the C of every platform's extensions, so the sdist carries it."""

    def run(self) -> None:
        _cythonize([_extension(pyx, pyx) for pyx in _sources(every_platform=True)], force=True)
        super().run()


def _extension(pyx: Path, source: Path) -> Extension:
    windows = pyx.parent == NATIVE / "windows"
    return Extension(
        ".".join(pyx.with_suffix("").parts),
        [str(source)],
        libraries=["ws2_32"] if windows else [],
        # The io_uring driver includes its vendored kernel ABI header (uring_abi.h) from there.
        include_dirs=[str(pyx.parent)],
        define_macros=[] if windows else [("_GNU_SOURCE", "1")],
        extra_compile_args=[] if windows else ["-O2"],
        # A failed compile skips the extension (the pure drivers still install) unless CI says not.
        optional=not REQUIRE_EXTENSIONS,
    )


def _extensions() -> list[Extension]:
    exts = []
    for pyx in _sources():
        source = pyx if USE_CYTHON else pyx.with_suffix(".c")
        if not source.exists():
            raise RuntimeError(f"{source} is missing: this sdist was made without its generated C")
        exts.append(_extension(pyx, source))
    return exts


setup(
    packages=_packages(),
    ext_modules=_extensions(),
    setup_requires=[CYTHON_REQUIREMENT] if USE_CYTHON else [],
    cmdclass={"build_py": BuildPyWithStubs, "build_ext": BuildExtFromCythonOrC, "sdist": SdistWithC},
)
