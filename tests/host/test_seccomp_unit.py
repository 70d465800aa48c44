"""Builds and runs the C++ unit test of the seccomp policy (cpp/jail/seccomp_test.cc): table
invariants, the ioctl decomposition, the compiled program through a BPF interpreter, and a
real install in a forked child."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent.parent
SOURCES = ["jail/seccomp_test.cc", "jail/seccomp.cc", "jail/seccomp_policy.cc"]


def test_seccomp_cpp_unit_test(tmp_path):
    cxx = (
        os.environ.get("CXX")
        or shutil.which("c++")
        or shutil.which("g++")
        or shutil.which("clang++")
    )
    require(
        cxx is not None, "a C++20 compiler is needed to build cpp/jail/seccomp_test.cc"
    )
    exe = tmp_path / "seccomp_test"
    build = subprocess.run(
        [
            cxx,
            "-std=c++20",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{ROOT / 'cpp'}",
            *[str(ROOT / "cpp" / s) for s in SOURCES],
            "-lseccomp",
            "-o",
            str(exe),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run(
        [str(exe)], check=False, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "OK: 0 failed checks" in run.stdout
    print(run.stdout)
