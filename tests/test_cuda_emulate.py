"""The CUDA kernels' per-thread bodies (cuda/*.cuh), run by the host harness
over an emulated grid, against the CPU backend's kernels on random inputs.

Runs in every build: the bodies are compiled by the C++ compiler into _core.
Sizes are awkward on purpose (not multiples of warps, chunks or blocks),
batches > 1, and the states are handed from call to call (prefill chunks,
prefill then step) so that the carry is checked, not only one call.
"""
import numpy as np
import pytest

import reference as ref
from mambart import _core

emu = _core.cuda_emulate
cpu = _core.kernels


def rand(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def close(got, want, tol=2e-5):
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("C,K", [(1, 4), (37, 4), (130, 3), (9, 2)])
def test_conv1d_prefill_then_step(C, K):
    rng = np.random.default_rng(C + K)
    w, bias = rand(rng, C, K), rand(rng, C)
    s_cpu, s_emu = rand(rng, C, K), None
    s_emu = s_cpu.copy()
    for L in (1, 2, 7, 33):  # lengths shorter and longer than K, state carried across calls
        x = rand(rng, L, C)
        close(emu.conv1d_prefill(x, w, bias, s_emu), cpu.conv1d_prefill(x, w, bias, s_cpu))
        close(s_emu, s_cpu)
    b_cpu = np.stack([s_cpu] * 3)
    b_emu = b_cpu.copy()
    for _ in range(3):
        x = rand(rng, 3, C)
        close(emu.conv1d_step(x, w, None, b_emu), cpu.conv1d_step(x, w, None, b_cpu))
        close(b_emu, b_cpu)


def scan_inputs(rng, rows, E, N):
    return dict(x=rand(rng, rows, E), dt=rand(rng, rows, E), B=rand(rng, rows, N), C=rand(rng, rows, N),
                z=rand(rng, rows, E))


@pytest.mark.parametrize("E,N", [(1, 1), (7, 16), (33, 5)])
@pytest.mark.parametrize("gate", [True, False])
def test_scan_prefill_chunks_and_step(E, N, gate):
    rng = np.random.default_rng(E * N)
    dt_bias, D = rand(rng, E), rand(rng, E)
    A = -np.exp(rand(rng, E, N, scale=0.5))
    s_cpu = rand(rng, E, N)
    s_emu = s_cpu.copy()
    for L in (1, 16, 17, 45):  # around the device's 16-token time chunk
        t = scan_inputs(rng, L, E, N)
        z = t["z"] if gate else None
        want = cpu.scan_prefill(t["x"], t["dt"], dt_bias, A, t["B"], t["C"], D, z, s_cpu)
        got = emu.scan(t["x"], t["dt"], dt_bias, A, t["B"], t["C"], D, z, s_emu, batch=1)
        close(got, want)
        close(s_emu, s_cpu)
    batch = 3
    b_cpu = np.stack([s_cpu, -s_cpu, 0.5 * s_cpu])
    b_emu = b_cpu.copy()
    for _ in range(2):
        t = scan_inputs(rng, batch, E, N)
        z = t["z"] if gate else None
        want = cpu.scan_step(t["x"], t["dt"], dt_bias, A, t["B"], t["C"], D, z, b_cpu)
        got = emu.scan(t["x"], t["dt"], dt_bias, A, t["B"], t["C"], D, z, b_emu, batch=batch)
        close(got, want)
        close(b_emu, b_cpu)


def ssd_inputs(rng, rows, H, P, G, N):
    return dict(x=rand(rng, rows, H * P), dt=rand(rng, rows, H), B=rand(rng, rows, G * N), C=rand(rng, rows, G * N))


@pytest.mark.parametrize("H,P,G,N", [(1, 1, 1, 1), (4, 5, 2, 3), (3, 33, 1, 16), (6, 8, 3, 7)])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("threads", [1, 7, 32])
def test_ssd_prefill_chunks_and_step(H, P, G, N, per_channel, threads):
    rng = np.random.default_rng(H * P + N)
    dt_bias, A = rand(rng, H), -np.exp(rand(rng, H, scale=0.5))
    D = rand(rng, H * P) if per_channel and P > 1 else rand(rng, H)
    chunk = 8
    s_cpu = rand(rng, H, P, N)
    s_emu = s_cpu.copy()
    for L, (lo, hi) in zip((1, 8, 19), ((0.0, np.inf), (0.01, 2.0), (0.0, np.inf))):
        t = ssd_inputs(rng, L, H, P, G, N)
        want = cpu.ssd_prefill(t["x"], t["dt"], dt_bias, A, t["B"], t["C"], D, s_cpu, G, chunk, lo, hi)
        got = emu.ssd_prefill(t["x"], t["dt"], dt_bias, A, t["B"], t["C"], D, s_emu, G, chunk, lo, hi,
                              threads=threads)
        close(got, want, 1e-4)
        close(s_emu, s_cpu, 1e-4)
    batch = 2
    b_cpu = np.stack([s_cpu, 2 * s_cpu])
    b_emu = b_cpu.copy()
    t = ssd_inputs(rng, batch, H, P, G, N)
    want = cpu.ssd_step(t["x"], t["dt"], dt_bias, A, t["B"], t["C"], D, b_cpu, G)
    got = emu.ssd_step(t["x"], t["dt"], dt_bias, A, t["B"], t["C"], D, b_emu, G)
    close(got, want, 1e-4)
    close(b_emu, b_cpu, 1e-4)


@pytest.mark.parametrize("rows,dim", [(1, 1), (3, 31), (2, 257), (5, 1000)])
@pytest.mark.parametrize("threads", [1, 32, 256])
def test_rmsnorm(rows, dim, threads):
    rng = np.random.default_rng(rows * dim)
    r_cpu, add, w = rand(rng, rows, dim), rand(rng, rows, dim), rand(rng, dim)
    r_emu = r_cpu.copy()
    close(emu.rmsnorm(r_emu, w, add, 1e-5, threads), cpu.rmsnorm(r_cpu, w, add, 1e-5))
    close(r_emu, r_cpu)
    close(emu.rmsnorm(r_emu, w, None, 1e-5, threads), cpu.rmsnorm(r_cpu, w, None, 1e-5))


@pytest.mark.parametrize("norm_before_gate", (False, True))
@pytest.mark.parametrize("rows,dim,group", [(1, 8, 8), (3, 96, 32), (2, 65, 13)])
def test_rmsnorm_gated_and_gate(rows, dim, group, norm_before_gate):
    rng = np.random.default_rng(dim)
    x, z, w = rand(rng, rows, dim), rand(rng, rows, dim), rand(rng, dim)
    close(emu.rmsnorm_gated(x, z, w, group, 1e-5, 32, norm_before_gate),
          cpu.rmsnorm_gated(x, z, w, group, 1e-5, norm_before_gate=norm_before_gate))
    close(emu.gate_silu(x, z), cpu.gate_silu(x, z))


@pytest.mark.parametrize("n", [1, 7, 300, 1029])
def test_gate_gelu_and_relu_sq(n):
    rng = np.random.default_rng(n)
    x, z = rand(rng, n, scale=3.0), rand(rng, n, scale=3.0)
    z[::5] = 0.0
    close(emu.gate_gelu(x, z), cpu.gate_gelu(x, z), 1e-5)  # the CPU SIMD erf is an approximation
    close(emu.gate_gelu(x, z), ref.gate_gelu(x, z), 1e-6)
    x[::3] = 0.0
    close(emu.relu_sq(x), cpu.relu_sq(x), 0)
    close(emu.relu_sq(x), ref.relu_sq(x), 1e-6)


@pytest.mark.parametrize("rows,ld,cols", [(1, 1, 1), (3, 37, 37), (4, 50, 29)])
def test_scale_axpy_mul_columns(rows, ld, cols):
    """The hybrids' multipliers: each is one f32 multiply (and add), so exact."""
    rng = np.random.default_rng(ld)
    y, x, col = rand(rng, rows, ld), rand(rng, rows, ld), rand(rng, cols)
    got = y.copy()
    emu.scale(got, 0.37)
    close(got, y * np.float32(0.37), 0)
    got = y.copy()
    emu.scale(got, -1.5, x=x)
    close(got, y + np.float32(-1.5) * x, 0)
    got = y.copy()
    emu.scale(got, col_scale=col, cols=cols)  # columns past cols untouched (a row stride)
    want = y.copy()
    want[:, :cols] *= col
    close(got, want, 0)


# (n_heads, n_kv_heads, head_dim): MHA, GQA with one and several kv heads, odd head sizes.
ATTN_HEADS = [(1, 1, 8), (6, 2, 13), (5, 1, 33), (4, 4, 130)]


def attn_close(got, q, ks, vs, lens, hq, hkv, scale):
    close(got, cpu.attention(q, ks, vs, lens, hq, hkv, scale), 2e-5)
    close(got, ref.attention(q, ks, vs, lens, hq, hkv, scale), 2e-5)


@pytest.mark.parametrize("hq,hkv,d", ATTN_HEADS)
@pytest.mark.parametrize("threads", [1, 7, 128])
def test_attention_prefill_then_decode(hq, hkv, d, threads):
    """A prefill (row t sees keys [0, t]) around the key block of 64, then
    decode steps appending to the same cache, one query each."""
    rng = np.random.default_rng(hq * d + threads)
    L, steps, scale = 70, 3, d ** -0.5
    k = rand(rng, L + steps + 2, hkv, d)  # capacity past what is used
    v = rand(rng, L + steps + 2, hkv, d)
    q = rand(rng, L, hq * d)
    lens = list(range(1, L + 1))
    attn_close(emu.attention(q, [k] * L, [v] * L, lens, hq, hkv, scale, threads), q, [k] * L, [v] * L, lens,
               hq, hkv, scale)
    for t in range(L, L + steps):
        k[t], v[t] = rand(rng, hkv, d), rand(rng, hkv, d)  # the step's own key and value
        q1 = rand(rng, 1, hq * d)
        attn_close(emu.attention(q1, [k], [v], [t + 1], hq, hkv, scale, threads), q1, [k], [v], [t + 1],
                   hq, hkv, scale)


@pytest.mark.parametrize("hq,hkv,d", ATTN_HEADS)
def test_attention_batch_rows_of_different_lengths(hq, hkv, d):
    """A decode batch: each row over its own cache and length (1, under,
    at and past the key block of 64), a peaked softmax (large scale) too."""
    rng = np.random.default_rng(d)
    lens = [1, 7, 64, 65, 129]
    ks = [rand(rng, n + 3, hkv, d) for n in lens]
    vs = [rand(rng, n + 3, hkv, d) for n in lens]
    q = rand(rng, len(lens), hq * d)
    for scale in (0.125, 3.0):
        attn_close(emu.attention(q, ks, vs, lens, hq, hkv, scale, 32), q, ks, vs, lens, hq, hkv, scale)


@pytest.mark.parametrize("n_heads,d,rot,scale", [(1, 8, 8, 1.0), (3, 13, 6, 1.0), (2, 64, 32, 1.2),
                                                 (4, 130, 130, 1.0)])
def test_rope_partial_rotary(n_heads, d, rot, scale):
    rng = np.random.default_rng(d + rot)
    x = rand(rng, 5, n_heads * d)
    pos = [0, 1, 17, 255, 4097]
    inv_freq = (1.0 / 10000.0 ** (np.arange(0, rot, 2) / rot)).astype(np.float32)
    got, want = x.copy(), x.copy()
    emu.rope(got, pos, inv_freq, n_heads, scale)
    cpu.rope(want, pos, inv_freq, n_heads, scale)
    close(got, want, 1e-6)
    close(got, ref.rope(x, pos, inv_freq, n_heads, scale), 1e-5)
    np.testing.assert_array_equal(got.reshape(5, n_heads, d)[:, :, rot:], x.reshape(5, n_heads, d)[:, :, rot:])


WEIGHT_TYPES = ["f32", "f16", "bf16", "q8", "q4"]


def typed(w, dtype):
    raw = _core.kernels.convert(w, dtype)
    return _core.Tensor(raw, dtype, list(w.shape)), _core.kernels.dequantize(raw, dtype, w.shape[1])


@pytest.mark.parametrize("dtype", WEIGHT_TYPES)
def test_embedding(dtype):
    rng = np.random.default_rng(1)
    table, exact = typed(rand(rng, 11, 45), dtype)
    ids = [3, 0, 10, 3]
    close(emu.embedding(table, ids), exact[ids], 0)


@pytest.mark.parametrize("dtype", WEIGHT_TYPES)
@pytest.mark.parametrize("M,N,K", [(1, 5, 32), (3, 7, 45), (17, 4, 100), (33, 3, 257)])
def test_matvec(dtype, M, N, K):
    rng = np.random.default_rng(M * N * K)
    w, exact = typed(rand(rng, N, K), dtype)
    x, bias = rand(rng, M, K), rand(rng, N)
    want = cpu.matmul(x, exact, bias)
    for threads in (1, 5, 64):
        close(emu.matvec(x, w, bias, threads), want, 1e-4)


SAMPLING = [
    dict(temperature=0.0),
    dict(temperature=0.0, repetition_penalty=1.3),
    dict(temperature=1.0),
    dict(temperature=0.7, top_k=5),
    dict(temperature=1.2, top_k=1),
    dict(temperature=0.8, top_p=0.9),
    dict(temperature=1.0, top_p=0.3, repetition_penalty=1.2),
    dict(temperature=1.0, min_p=0.05),
    dict(temperature=0.9, top_k=40, top_p=0.8, min_p=0.02, repetition_penalty=1.1),
]


@pytest.mark.parametrize("params", SAMPLING, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
@pytest.mark.parametrize("vocab", [1, 7, 300])
@pytest.mark.parametrize("ties", [False, True])
def test_sample_matches_cpu_sampler(params, vocab, ties):
    rng = np.random.default_rng(vocab)
    batch = 3
    for trial in range(4):
        logits = rand(rng, batch, vocab, scale=3.0)
        if ties:
            logits = np.round(logits)
            logits[:, 1::3] = -np.inf  # column 0 stays finite
        histories = [list(rng.integers(0, vocab + 5, size=6)) for _ in range(batch)]
        cpu_s = [_core.Sampler(seed=trial * 10 + b, **params) for b in range(batch)]
        emu_s = [_core.Sampler(seed=trial * 10 + b, **params) for b in range(batch)]
        want = [cpu_s[b].sample(logits[b], histories[b]) for b in range(batch)]
        for threads in (1, 13):
            for b in range(batch):
                emu_s[b].rng_state = _core.Sampler(seed=trial * 10 + b, **params).rng_state
            got = emu.sample(logits, emu_s, histories, threads)
            assert got == want
            assert [s.rng_state for s in emu_s] == [s.rng_state for s in cpu_s]


def test_sample_reports_bad_logits():
    logits = np.array([[0.0, np.nan, 1.0], [-np.inf, -np.inf, -np.inf]], dtype=np.float32)
    got = emu.sample(logits, [_core.Sampler(), _core.Sampler()], [[], []], 4)
    assert got == [-1, -2]


def test_cuda_entry_points_without_cuda():
    if _core.cuda_built():
        pytest.skip("this build includes CUDA")
    assert _core.cuda_device_count() == 0


@pytest.mark.parametrize("params", [dict(temperature=0.0, presence_penalty=0.8),
                                    dict(temperature=1.0, frequency_penalty=0.5, presence_penalty=-0.3),
                                    dict(temperature=0.8, top_p=0.9, repetition_penalty=1.2, frequency_penalty=1.5)])
def test_sample_presence_frequency_matches_cpu(params):
    """Penalties follow each sampler's own draws step after step, on the device
    path exactly as on the CPU (ids, RNG states and counts)."""
    rng = np.random.default_rng(11)
    batch, vocab = 3, 50
    cpu_s = [_core.Sampler(seed=b, **params) for b in range(batch)]
    emu_s = [_core.Sampler(seed=b, **params) for b in range(batch)]
    histories = [list(rng.integers(0, vocab, size=5)) for _ in range(batch)]
    for step in range(25):
        logits = rand(rng, batch, vocab, scale=2.0)
        want = [cpu_s[b].sample(logits[b], histories[b]) for b in range(batch)]
        got = emu.sample(logits, emu_s, histories, 7 if step % 2 else 1)
        assert got == want
        assert [s.counts for s in emu_s] == [s.counts for s in cpu_s]
        for b in range(batch):
            histories[b].append(want[b])
    assert any(c > 1 for s in cpu_s for c in s.counts.values())
