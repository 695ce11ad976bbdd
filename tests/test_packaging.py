"""What a built distribution carries beyond the sources: the stubs of the compiled modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUBS = ROOT / "typings" / "horizon_drivers" / "native"


@pytest.mark.timeout(180)
def test_wheels_carry_the_stubs_of_the_extensions_built_here(tmp_path: Path) -> None:
    # build_py is the step that fills a wheel's package tree; it needs no compiler.
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=150, check=False,
    )
    assert done.returncode == 0, done.stderr
    native = tmp_path / "horizon_drivers" / "native"
    prefix = "_win_" if sys.platform == "win32" else "_linux_" if sys.platform == "linux" else None
    expected = {p.name for p in STUBS.glob("*.pyi") if prefix and p.name.startswith(prefix)}
    assert {p.name for p in native.glob("*.pyi")} == expected
    for name in expected:
        assert (native / name).read_bytes() == (STUBS / name).read_bytes()
    assert (tmp_path / "horizon_drivers" / "py.typed").exists()
