"""What a built wheel's package tree carries: the stubs of the compiled modules, and no sources."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TYPINGS = ROOT / "typings"
# The folders of compiled modules built on this platform (setup.py's COMPILED_FOLDERS).
FOLDERS = {
    "linux": ["horizon_drivers/native/linux", "horizon_drivers/native/uring", "horizon_drivers/bench"],
    "win32": ["horizon_drivers/native/windows"],
}.get(sys.platform, [])


@pytest.mark.timeout(180)
def test_wheels_carry_the_stubs_of_the_extensions_built_here(tmp_path: Path) -> None:
    # build_py is the step that fills a wheel's package tree; it needs no compiler.
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=150, check=False,
    )
    assert done.returncode == 0, done.stderr
    expected = {
        stub.relative_to(TYPINGS) for folder in FOLDERS for stub in (TYPINGS / folder).glob("*.pyi")
    }
    assert expected or not FOLDERS
    built = {p.relative_to(tmp_path) for p in tmp_path.rglob("*.pyi")}
    assert built == expected
    for name in expected:
        assert (tmp_path / name).read_bytes() == (TYPINGS / name).read_bytes()
    assert (tmp_path / "horizon_drivers" / "py.typed").exists()
    # Cython and C sources are the sdist's (MANIFEST.in); another platform's folder is left out.
    sources = [p for p in tmp_path.rglob("*") if p.suffix in {".c", ".pyx", ".pxd", ".pxi", ".html"}]
    assert sources == []
    elsewhere = {"linux": "horizon_drivers/native/windows", "win32": "horizon_drivers/native/linux"}
    if sys.platform in elsewhere:
        assert not (tmp_path / elsewhere[sys.platform]).exists()
    assert list(tmp_path.rglob("conftest.py")) == []
