#!/bin/sh
# Cross-builds the core for arm64 (warnings as errors) and runs its NEON
# kernels against the scalar ones under qemu (tests/cpp/kernel_check.cpp).
# Needs g++-aarch64-linux-gnu and qemu-user (Debian package names).
set -eu
cd "$(dirname "$0")/.."
build=${1:-build-arm64}
cmake -S . -B "$build" -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ -DMAMBART_PYTHON=OFF -DMAMBART_CUDA=OFF \
  -DMAMBART_KERNEL_CHECK=ON -DMAMBART_WERROR=ON >/dev/null
cmake --build "$build" --target kernel_check -j 2 >/dev/null
qemu-aarch64 -L /usr/aarch64-linux-gnu "$build/kernel_check"
