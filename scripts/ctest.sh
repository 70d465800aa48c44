#!/usr/bin/env bash
# Builds the C++ unit tests (cpp/**/*_test.cc) in a build tree of their own and runs them with
# ctest. PYTHON (default .venv/bin/python) is the interpreter whose pybind11 CMake needs to
# configure the project; BUILD_DIR (default build/ctest) the tree. Exits non-zero when a test
# fails or does not build.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$here/build/ctest}
py=${PYTHON:-$here/.venv/bin/python}
# The configure step needs pybind11 even for the tests: the project declares the module too.
pybind11_dir=$("$py" -c 'import pybind11; print(pybind11.get_cmake_dir())')
python_exe=$("$py" -c 'import sys; print(sys.executable)')
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWARDEN_BUILD_TESTS=ON \
  -Dpybind11_DIR="$pybind11_dir" -DPython_EXECUTABLE="$python_exe" >/dev/null
cmake --build "$build" --target warden_tests
cd "$build"
ctest --output-on-failure --parallel "$(nproc)"
