"""Machine probes shared by the benchmarks: the CPU, memory read bandwidth and peak FMA rate.

The probes are a few lines of C built with `cc` when there is one (-mavx2
-mfma): a read at the memory's pace needs several independent vector
chains, which numpy's reductions do not always have. Without a compiler,
numpy's max (a vectorised read that releases the GIL) gives the bandwidth.
"""
import ctypes
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time

import numpy as np

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


def cpu_name() -> str:
    """The CPU as /proc/cpuinfo names it, with its family and model numbers where it gives them
    (AMD's "AMD EPYC" is every generation alike: family 25 is Zen 3 / Zen 4, 26 is Zen 5, whose
    FMA rates differ by 2x), and the ISA mambart runs on it."""
    from mambart import _core

    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return f"{name}, mambart ISA {_core.isa()}"


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


def split(n, parts, grain=64):
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


