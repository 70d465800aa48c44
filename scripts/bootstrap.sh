#!/usr/bin/env bash
# Sets up warden on a fresh Debian machine and runs the demo or the whole test suite.
#   scripts/bootstrap.sh demo   installs what is missing, builds warden, runs `warden demo`
#   scripts/bootstrap.sh test   the same set-up plus test dependencies, then every test
# Idempotent: packages already present are not reinstalled; the build is reused when the
# sources did not change.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
case "$mode" in demo|test) ;; *) echo "usage: $0 demo|test" >&2; exit 2 ;; esac

# g++ builds warden._core, which links libseccomp (libseccomp-dev).
apt_need=(g++ libc6-dev libseccomp-dev bubblewrap python3-venv)
if [ "$mode" = test ]; then
  # clang + libclang-rt: the libFuzzer target; gcc: the seccomp probes the tests compile;
  # cmake + ninja: the C++ unit tests (scripts/ctest.sh); qemu + a stock kernel + busybox:
  # the cgroup v2 guest; docker.io: the Docker provider's suite; iproute2: the network
  # tests' `ip`.
  apt_need+=(gcc clang libclang-rt-14-dev cmake ninja-build qemu-system-x86 linux-image-amd64
             busybox-static docker.io iproute2)
fi
missing=()
for pkg in "${apt_need[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "warden: installing Debian packages: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
extras=""
[ "$mode" = test ] && extras="[dev]"
echo "warden: building and installing the package (.venv)"
.venv/bin/python -m pip install -q ".$extras"

if [ "$mode" = demo ]; then
  exec .venv/bin/warden demo
fi
exec scripts/test-all.sh
