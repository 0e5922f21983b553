"""Single-thread timings of the Mamba-2 kernels, every available ISA.

    PYTHONPATH=. python benchmarks/kernels_ssd.py [--heads 24 --head-dim 64 --state 128]

Sizes default to mamba2-130m (d_inner 1536 = 24 heads x 64, d_state 128,
one group). ssd_step is timed on one state (L2-resident after the first
call) and on one state per layer of a 24-layer model (19 MB, as in real
decoding, where each layer's state is cold again by its next token). Times
include the ~1-2 us of the Python call.
"""
import argparse
import time

import numpy as np

from mambart import _core

K_ = _core.kernels


def best(fn, repeat, number):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t) / number)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--heads", type=int, default=24)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--state", type=int, default=128)
    ap.add_argument("--groups", type=int, default=1)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--layers", type=int, default=24)
    args = ap.parse_args()
    H, P, N, G, L = args.heads, args.head_dim, args.state, args.groups, args.seqlen
    rng = np.random.default_rng(0)
    f32 = lambda *s, scale=1.0, shift=0.0: (rng.standard_normal(s) * scale + shift).astype(np.float32)

    def inputs(rows):
        return dict(x=f32(rows, H * P), dt=f32(rows, H, scale=0.5, shift=-1.0), dt_bias=f32(H, scale=0.1),
                    A=-np.exp(f32(H, scale=0.5)), B=f32(rows, G * N), C=f32(rows, G * N), D=f32(H))

    step_in, pre_in = inputs(1), inputs(L)
    states = [f32(1, H, P, N, scale=0.1) for _ in range(args.layers)]
    pstate = f32(H, P, N, scale=0.1)
    xr, zr, wr = f32(L, H * P), f32(L, H * P), f32(H * P)
    out = np.empty((1, H * P), np.float32)
    results = {}
    print(f"H={H} P={P} N={N} G={G}; state {H * P * N * 4 / 1024:.0f} KB per layer")
    for isa in _core.available_isas():
        _core.set_isa(isa)
        r = results[isa] = {}
        r["step_hot"] = best(lambda: K_.ssd_step(**step_in, state=states[0], groups=G, out=out), 5, 200)
        it = iter(range(10**9))
        r["step_cold"] = best(lambda: K_.ssd_step(**step_in, state=states[next(it) % len(states)], groups=G,
                                                  out=out), 5, 240)
        number = 3 if isa == "scalar" else 20
        # chunk is for CUDA: the CPU prefill runs token by token.
        r["prefill"] = best(lambda: K_.ssd_prefill(**pre_in, state=pstate, groups=G, chunk=64), 3, number)
        r["rmsnorm_gated"] = best(lambda: K_.rmsnorm_gated(xr, zr, wr, H * P // G), 5, 20)
        print(f"{isa:>7}: ssd_step {r['step_hot'] * 1e6:7.1f} us (hot state), {r['step_cold'] * 1e6:7.1f} us "
              f"(one state per layer, {args.layers} layers) | ssd_prefill L={L} "
              f"{r['prefill'] * 1e3:7.2f} ms = {L / r['prefill']:8.0f} tokens/s | "
              f"rmsnorm_gated ({L}, {H * P}) {r['rmsnorm_gated'] * 1e6:6.1f} us")
    if "scalar" in results and len(results) > 1:
        s = results["scalar"]
        for isa, r in results.items():
            if isa != "scalar":
                print(f"{isa} speed-up over scalar: " + ", ".join(f"{k} {s[k] / r[k]:.1f}x" for k in s))
    _core.set_isa(_core.available_isas()[-1])


if __name__ == "__main__":
    main()
