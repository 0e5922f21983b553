"""matmul timings per weight type: decode against memory bandwidth, prefill against peak FMA.

    PYTHONPATH=. python benchmarks/kernels_matmul.py [--threads 2] [--types f32,q8] [--quick]

Decode (M = 1 and 8): the lm_head of a 130m model (N=50280, K=768) and an
in_proj-sized matrix (N=3072, K=768), reported as GB/s of weight bytes
streamed and as % of the measured read bandwidth. As in the backend, each
of --threads Python threads runs the kernel on its own slice of N (the
binding releases the GIL; slices are rounded to 48 rows). Enough copies of
each matrix are cycled through (>= 256 MB) that every call reads its
weights from memory, as a real model's layers do, not from the 32 MB L3.

Prefill (M = 512, N = 3072, K = 768): single-threaded GEMM GFLOP/s and %
of the peak FMA rate (2 FMA/cycle x 8 lanes x 2 flops x clock, measured
with a register-only FMA loop).

The bandwidth and peak probes are a few lines of C built with `cc` when
there is one (-mavx2 -mfma; otherwise numpy reductions give the bandwidth
and --peak the FMA rate). The machine is shared: every figure is the best
of several interleaved runs, and each decode figure's % is taken against
a bandwidth probe run just before it.
"""
import argparse
import ctypes
import os
import shutil
import subprocess
import tempfile
import threading
import time

import numpy as np

from mambart import _core

K_ = _core.kernels

PROBE_C = r"""
#include <immintrin.h>
#include <stddef.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
/* Sum of n floats (n a multiple of 32) with 4 independent chains: reads at the memory's pace. */
float read_sum(const float* p, size_t n) {
  __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
  for (size_t i = 0; i < n; i += 32) {
    a = _mm256_add_ps(a, _mm256_loadu_ps(p + i)); b = _mm256_add_ps(b, _mm256_loadu_ps(p + i + 8));
    c = _mm256_add_ps(c, _mm256_loadu_ps(p + i + 16)); d = _mm256_add_ps(d, _mm256_loadu_ps(p + i + 24));
  }
  float o[8]; _mm256_storeu_ps(o, _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
  return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
}
/* GFLOP/s of 10 independent FMA chains (enough to cover latency x 2 pipes). */
double fma_peak(long iters) {
  __m256 v0 = _mm256_set1_ps(0.1f), v1 = _mm256_set1_ps(0.2f), v2 = _mm256_set1_ps(0.3f), v3 = _mm256_set1_ps(0.4f),
         v4 = _mm256_set1_ps(0.5f), v5 = _mm256_set1_ps(0.6f), v6 = _mm256_set1_ps(0.7f), v7 = _mm256_set1_ps(0.8f),
         v8 = _mm256_set1_ps(0.9f), v9 = _mm256_set1_ps(1.0f), m = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(1e-4f);
  double t = now();
  for (long i = 0; i < iters; ++i) {
    v0 = _mm256_fmadd_ps(v0, m, c); v1 = _mm256_fmadd_ps(v1, m, c); v2 = _mm256_fmadd_ps(v2, m, c);
    v3 = _mm256_fmadd_ps(v3, m, c); v4 = _mm256_fmadd_ps(v4, m, c); v5 = _mm256_fmadd_ps(v5, m, c);
    v6 = _mm256_fmadd_ps(v6, m, c); v7 = _mm256_fmadd_ps(v7, m, c); v8 = _mm256_fmadd_ps(v8, m, c);
    v9 = _mm256_fmadd_ps(v9, m, c);
  }
  t = now() - t;
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(v0, v1), _mm256_add_ps(v2, v3)),
                           _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(v4, v5), _mm256_add_ps(v6, v7)), _mm256_add_ps(v8, v9)));
  volatile float sink = _mm256_cvtss_f32(s); (void)sink;
  return iters * 10.0 * 16.0 / t / 1e9;
}
"""


def build_probe():
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return None
    d = tempfile.mkdtemp()
    src, lib = os.path.join(d, "probe.c"), os.path.join(d, "probe.so")
    with open(src, "w") as f:
        f.write(PROBE_C)
    r = subprocess.run([cc, "-O2", "-mavx2", "-mfma", "-shared", "-fPIC", src, "-o", lib], capture_output=True)
    if r.returncode != 0:
        return None
    so = ctypes.CDLL(lib)
    so.read_sum.argtypes, so.read_sum.restype = [ctypes.c_void_p, ctypes.c_size_t], ctypes.c_float
    so.fma_peak.argtypes, so.fma_peak.restype = [ctypes.c_long], ctypes.c_double
    return so


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def parallel(jobs):
    """Run each job in its own thread, all released together; wall time."""
    start = threading.Barrier(len(jobs) + 1)

    def body(job):
        start.wait()
        job()

    threads = [threading.Thread(target=body, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def split(n, parts, grain=48):
    """The backend's ranges: [0, n) in `parts` contiguous pieces rounded to `grain`."""
    blocks = (n + grain - 1) // grain
    return [(min(n, blocks * i // parts * grain), min(n, blocks * (i + 1) // parts * grain)) for i in range(parts)]


def read_bandwidth(probe, threads, repeat=8):
    a = np.ones(256 << 18, np.float32)  # 256 MB
    parts = split(a.size // 32, threads, 1)
    if probe:
        def job(b, e):
            return lambda: probe.read_sum(a.ctypes.data + b * 128, (e - b) * 32)
    else:  # numpy's max is a plain vectorised read and releases the GIL
        def job(b, e):
            return lambda: a[b * 32: e * 32].max()
    return a.nbytes / min(parallel([job(b, e) for b, e in parts]) for _ in range(repeat)) / 1e9


def decode_setup(wtype, N, K, M, threads):
    """A job per thread multiplying M rows by its slice of N, over enough copies of w."""
    rng = np.random.default_rng(0)
    w = K_.convert(rng.standard_normal((N, K), dtype=np.float32) * 0.05, wtype)
    copies = [w] + [w.copy() for _ in range(max(0, -(-(256 << 20) // w.nbytes) - 1))]
    x = rng.standard_normal((M, K), dtype=np.float32)
    y = np.empty((M, N), np.float32)

    def job(b, e):
        def run():
            for c in copies:
                K_.matmul(x, c[b:e], out=y[:, b:e], wtype=wtype, K=K)
        return run

    jobs = [job(b, e) for b, e in split(N, threads) if b < e]
    parallel(jobs)  # warm-up: pages touched, scratch allocated
    return jobs, w.nbytes * len(copies)


def gemm_rate(wtype, M, N, K, repeat):
    rng = np.random.default_rng(0)
    w = K_.convert(rng.standard_normal((N, K), dtype=np.float32) * 0.05, wtype)
    x = rng.standard_normal((M, K), dtype=np.float32)
    y = np.empty((M, N), np.float32)
    K_.matmul(x, w, out=y, wtype=wtype, K=K)
    return 2.0 * M * N * K / best(lambda: K_.matmul(x, w, out=y, wtype=wtype, K=K), repeat) / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--types", default="f32,f16,bf16,q8,q4")
    ap.add_argument("--gemm-types", default="f32,q8")
    ap.add_argument("--peak", type=float, default=0.0, help="peak GFLOP/s of one core, if no C compiler")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args()
    repeat, rounds = (2, 1) if args.quick else (3, 3)
    probe = build_probe()
    bw = read_bandwidth(probe, args.threads)
    peak = args.peak or (max(probe.fma_peak(2_000_000) for _ in range(30)) if probe else 0.0)
    print(f"ISA {_core.isa()}; read bandwidth with {args.threads} threads {bw:.1f} GB/s "
          f"({'C probe' if probe else 'numpy max'}); peak FMA one core {peak:.1f} GFLOP/s")

    print(f"\ndecode, {args.threads} threads, weights from memory: GB/s of weights (% of read bandwidth)")
    shapes = [(N, K, M) for N, K in [(50280, 768), (3072, 768)] for M in (1, 8)]
    print(f"{'type':>6}" + "".join(f"  N={N} K={K} M={M}".ljust(24) for N, K, M in shapes))
    for wtype in args.types.split(","):
        runs = [decode_setup(wtype, N, K, M, args.threads) for N, K, M in shapes]
        rates, ratios = [0.0] * len(runs), [0.0] * len(runs)
        for _ in range(rounds):  # interleaved over time: the machine is shared
            for i, (jobs, nbytes) in enumerate(runs):
                # The bandwidth probe runs right before each measurement: both
                # move together when other work on the machine comes and goes.
                probe_bw = read_bandwidth(probe, args.threads, repeat=3)
                r = nbytes / min(parallel(jobs) for _ in range(repeat)) / 1e9
                rates[i], ratios[i] = max(rates[i], r), max(ratios[i], r / probe_bw)
                bw = max(bw, probe_bw)
        del runs
        print(f"{wtype:>6}" + "".join(f"  {r:6.1f} ({100 * q:3.0f}%)".ljust(24) for r, q in zip(rates, ratios)))
    print(f"(% of the probe run just before; best probe seen: {bw:.1f} GB/s)")

    M, N, K = 512, 3072, 768
    print(f"\nprefill GEMM, 1 thread, M={M} N={N} K={K}")
    for wtype in args.gemm_types.split(","):
        g = max(gemm_rate(wtype, M, N, K, repeat) for _ in range(rounds))
        if probe and not args.peak:
            peak = max([peak] + [probe.fma_peak(2_000_000) for _ in range(10)])
        pct = f" ({100 * g / peak:.0f}% of peak)" if peak else ""
        print(f"{wtype:>6}  {g:6.1f} GFLOP/s{pct}")


if __name__ == "__main__":
    main()
