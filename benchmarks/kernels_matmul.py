"""matmul timings per weight type: decode against memory bandwidth, prefill against peak FMA.

    PYTHONPATH=. python benchmarks/kernels_matmul.py [--threads 2] [--types f32,q8] [--quick] [--rows | --rows-only]

--rows: f32 decode GFLOP/s at M = 1..32 rows on a 130m model's shapes (in_proj
N=3072 K=768, out_proj N=768 K=1536, lm_head N=50280 K=768), every ISA
interleaved in one run (set_isa), weights from memory as below.

Decode (M = 1 and 8): the lm_head of a 130m model (N=50280, K=768) and an
in_proj-sized matrix (N=3072, K=768), reported as GB/s of weight bytes
streamed and as % of the measured read bandwidth. As in the backend, each
of --threads Python threads runs the kernel on its own slice of N (the
binding releases the GIL; slices are rounded to 64 rows). Enough copies of
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
import time

import numpy as np

from mambart import _core
from probe import build_probe, cpu_name, parallel, read_bandwidth, split

K_ = _core.kernels


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


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


def rows_sweep(threads, repeat, rounds):
    """f32 decode GFLOP/s for M = 1..32 rows at a 130m model's shapes, every ISA in one run."""
    isas = [i for i in _core.available_isas() if i != "scalar"]
    default = _core.isa()
    shapes = [(3072, 768), (768, 1536), (50280, 768)]
    ms = (1, 2, 4, 8, 16, 32)
    print(f"\ndense decode, f32, {threads} threads, weights from memory: GFLOP/s per ISA ({', '.join(isas)})")
    print(f"{'N K':>12}" + "".join(f"{'M=' + str(m):>16}" for m in ms))
    for N, K in shapes:
        runs = {m: decode_setup("f32", N, K, m, threads) for m in ms}
        rate = {(i, m): 0.0 for i in isas for m in ms}
        for _ in range(rounds):  # interleaved: the machine is shared
            for m, (jobs, nbytes) in runs.items():
                for i in isas:
                    _core.set_isa(i)
                    flops = 2.0 * m * nbytes / 4
                    rate[i, m] = max(rate[i, m], flops / min(parallel(jobs) for _ in range(repeat)) / 1e9)
        _core.set_isa(default)
        del runs
        print(f"{N:>6} {K:>5}" + "".join(f"{' / '.join(f'{rate[i, m]:.0f}' for i in isas):>16}" for m in ms))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--types", default="f32,f16,bf16,q8,q4")
    ap.add_argument("--gemm-types", default="f32,q8,q4")
    ap.add_argument("--peak", type=float, default=0.0, help="peak GFLOP/s of one core, if no C compiler")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--rows", action="store_true", help="also f32 decode at 1..32 rows, every ISA")
    ap.add_argument("--rows-only", action="store_true", help="only that")
    args = ap.parse_args()
    repeat, rounds = (2, 1) if args.quick else (3, 3)
    if args.rows_only:
        return rows_sweep(args.threads, repeat, rounds)
    probe = build_probe()
    bw = read_bandwidth(probe, args.threads)
    peak = args.peak or (max(probe.fma_peak(2_000_000) for _ in range(30)) if probe else 0.0)
    print(f"cpu: {cpu_name()}")
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

    if args.rows:
        rows_sweep(args.threads, repeat, rounds)

    M, N, K = 512, 3072, 768
    print(f"\nprefill GEMM, 1 thread, M={M} N={N} K={K} (a multiply-add counted as 2 flops; the peak is"
          " f32 FMA's: q8 / q4 on avx512 multiply in integers, 2 / 4 times as many per instruction)")
    for wtype in args.gemm_types.split(","):
        g = max(gemm_rate(wtype, M, N, K, repeat) for _ in range(rounds))
        if probe and not args.peak:
            peak = max([peak] + [probe.fma_peak(2_000_000) for _ in range(10)])
        pct = f" ({100 * g / peak:.0f}% of peak)" if peak else ""
        print(f"{wtype:>6}  {g:6.1f} GFLOP/s{pct}")


if __name__ == "__main__":
    main()
