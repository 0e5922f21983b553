"""The arm64 NEON kernels: cross-built (warnings as errors) and run under qemu against the scalar ones.

tools/check_arm64.sh does the work; .ci/run installs what it needs
(g++-aarch64-linux-gnu, qemu-user). The scalar kernels it compares with are
checked against float64 numpy in test_kernels.py.
"""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("aarch64-linux-gnu-g++", "qemu-aarch64", "cmake")


@pytest.mark.skipif(not all(shutil.which(t) for t in TOOLS),
                    reason="needs g++-aarch64-linux-gnu, qemu-user and cmake (installed by .ci/run)")
def test_neon_kernels_match_scalar_under_qemu(tmp_path):
    out = subprocess.run(["sh", str(ROOT / "tools" / "check_arm64.sh"), str(tmp_path / "build")], capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "neon matmul vs scalar: 1470 cases" in out.stdout, out.stdout
    assert "neon attention vs scalar: 66 cases" in out.stdout, out.stdout
