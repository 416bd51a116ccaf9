#!/usr/bin/env bash
# Python for ARM64 on an x86 machine: Debian's aarch64 packages unpacked into a private root and
# run by qemu-aarch64 (user mode), with the serving stack's aarch64 wheels beside it. It is how
# the model cards' ARM64 rows are measured (`cpu-check` under emulation: answers of the real
# ARM64 kernels, times meaningless).
#
#   bash model_build/arm64_python.sh setup            # once: needs the package registries
#   QEMU_CPU=max bash model_build/arm64_python.sh -m model_build cpu-check --model FILE \
#       --inputs INPUTS.npz --record                  # QEMU_CPU=cortex-a57: no dot product
#
# INPUTS.npz comes from a native `cpu-check ... --save-inputs`, so the emulated run only runs the
# model (decoding needs nothing more, but is slow under emulation). ARM64_ROOT (default
# runs/arm64) holds the root and the wheels; root needed for setup (dpkg --add-architecture) and
# for running (a private mount namespace, below).
set -euo pipefail
root=${ARM64_ROOT:-$(cd "$(dirname "$0")/.." && pwd)/runs/arm64}
repo=$(cd "$(dirname "$0")/.." && pwd)

if [[ ${1:-} == setup ]]; then
  mkdir -p "$root/debs" "$root/sysroot"
  dpkg --add-architecture arm64
  apt-get update -qq
  (cd "$root/debs" && apt-get download -qq \
    python3.11-minimal:arm64 libpython3.11-minimal:arm64 libpython3.11-stdlib:arm64 \
    libc6:arm64 zlib1g:arm64 libexpat1:arm64 libffi8:arm64 libssl3:arm64 libstdc++6:arm64 \
    libgcc-s1:arm64 libbz2-1.0:arm64 liblzma5:arm64 libuuid1:arm64 libncursesw6:arm64 \
    libtinfo6:arm64 libreadline8:arm64 libsqlite3-0:arm64 libcrypt1:arm64 libnsl2:arm64 \
    libtirpc3:arm64 libdb5.3:arm64 libgdbm6:arm64 libzstd1:arm64)
  for deb in "$root"/debs/*.deb; do dpkg-deb -x "$deb" "$root/sysroot"; done
  # The versions model_build's own environment has (the file means the same everywhere).
  pins=$("$repo/model_build/.venv/bin/python" -m pip freeze \
    | grep -iE '^(numpy|onnx|onnxruntime|pillow|protobuf|ml.dtypes)==')
  # shellcheck disable=SC2086  # one requirement per word
  python3 -m pip install -q --target "$root/site" --only-binary=:all: --implementation cp \
    --python-version 3.11 --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 \
    $pins imageio-ffmpeg
  echo "ARM64 Python in $root"
  exit 0
fi

command -v qemu-aarch64 > /dev/null || { echo "qemu-aarch64 missing (Debian: qemu-user)" >&2; exit 1; }
export PYTHONPATH="$root/site:$repo:$repo/functions" QEMU_CPU=${QEMU_CPU:-max} ROOT="$root"
# The guest's cpuinfo (inside ONNX Runtime) reads the host's x86 cache topology from sysfs and
# crashes on it, so the process gets a private mount namespace with a plain two-CPU sysfs view.
exec unshare -m bash -c '
  mount -t tmpfs none /sys/devices/system/cpu
  for f in possible present online; do echo 0-1 > /sys/devices/system/cpu/$f; done
  exec qemu-aarch64 -cpu "$QEMU_CPU" -L "$ROOT/sysroot" "$ROOT/sysroot/usr/bin/python3.11" "$@"
' bash "$@"
