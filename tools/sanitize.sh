#!/usr/bin/env bash
# The C++ core under AddressSanitizer and UndefinedBehaviorSanitizer: a
# CPU-only build of its own (BUILD, default build-sanitize) with
# -fsanitize=address,undefined and no recovery from undefined behaviour,
# then tests/cpp/kernel_check and the kernel, checkpoint, state and thread
# tests with that module. Any report fails the run.
#
#   bash tools/sanitize.sh [BUILD] [-- extra pytest arguments]
#
# Needs a C++ compiler with the sanitizer runtimes (gcc or clang), cmake,
# and a Python environment with the test extra and pybind11.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build-sanitize
if [[ $# -gt 0 && $1 != -- ]]; then build=$1; shift; fi
[[ ${1:-} == -- ]] && shift

cxx=${CXX:-c++}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# -O1: the sanitizers' advice, and a build twice as quick as -O2's with
# tests still quick enough; -g1: line numbers in the reports.
flags="-O1 -g1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=None \
  -DCMAKE_CXX_FLAGS="$flags" -DMAMBART_CUDA=OFF -DMAMBART_MODULE_IN_SOURCE=OFF -DMAMBART_KERNEL_CHECK=ON \
  -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
cmake --build "$build" -j"$(nproc)"

# The package with the sanitized module, ahead of any other on the path.
site=$build/site
rm -rf "$site" && mkdir -p "$site"
cp -r mambart "$site/"
rm -f "$site"/mambart/_core*.so
cp "$build"/_core*.so "$site/mambart/"

# Leaks are not checked: the interpreter keeps memory until exit by design.
# allocator_may_return_null: a refused huge allocation must reach our
# MemoryError, as it does without the sanitizer.
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

"$build/kernel_check"

# Python is not instrumented: the ASan runtime must be loaded first, and
# libstdc++ with it so that ASan finds the real __cxa_throw (else the first
# C++ exception stops the process).
preload="$("$cxx" -print-file-name=libasan.so) $("$cxx" -print-file-name=libstdc++.so)"
export PYTHONPATH=$PWD/$site
LD_PRELOAD=$preload python -P -c 'import mambart._core as c, sys; assert c.__file__.startswith(sys.argv[1]), c.__file__' \
  "$PWD/$site"
LD_PRELOAD=$preload pytest -q -p no:cacheprovider \
  tests/test_kernels.py tests/test_checkpoint.py tests/test_torch_pickle.py tests/test_weights.py \
  tests/test_sampler.py tests/test_state.py tests/test_state_file.py tests/test_fuzz_state.py \
  tests/test_threads.py tests/test_sizes.py tests/test_decoder_calls.py tests/test_rows.py "$@"
