"""CPU kernels against tests/reference.py, on every ISA this machine runs."""
import os
import platform
import subprocess
import tempfile
import sys

import numpy as np
import pytest

import reference as ref
from mambart import _core

K_ = _core.kernels
ISAS = _core.available_isas()
DEFAULT_ISA = _core.isa()
SIZES = (1, 7, 8, 9, 31, 33, 257)  # straddle the 8-float SIMD width
BATCH = (1, 3)
TOL = {np.dtype(np.float32): 1e-5}


@pytest.fixture(params=ISAS)
def isa(request):
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa(DEFAULT_ISA)


def assert_close(got, want, per_element=False):
    """max|got - want| / max|want| <= TOL[got.dtype] (per element if asked).

    NaNs must sit at the same places; equal values (infinities included) count
    as exact.
    """
    got = np.asarray(got)
    tol = TOL[got.dtype]
    got, want = got.astype(np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg="NaN positions differ")
    exact = (got == want) | np.isnan(want)
    assert np.all(np.isfinite(want[~exact])), "infinities differ"
    tiny = np.finfo(np.float64).tiny
    diff, scale = np.abs(got[~exact] - want[~exact]), np.abs(want[~exact])
    if per_element:
        err = np.max(diff / np.maximum(scale, tiny), initial=0.0)
    else:
        finite = np.abs(want[np.isfinite(want)])
        err = diff.max(initial=0.0) / max(finite.max(initial=0.0), tiny)
    assert err <= tol, f"relative error {err:.3g} > {tol:g}"


def rand(rng, *shape, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(np.float32)


# ---------------------------------------------------------------- ISA choice


def _cpu_flags():
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return set()
    try:
        with open("/proc/cpuinfo") as f:
            return set(next(line for line in f if line.startswith("flags")).split())
    except (OSError, StopIteration):
        pytest.skip("cannot read CPU flags")


def test_available_isas():
    assert ISAS[0] == "scalar"
    flags = _cpu_flags()
    if {"avx2", "fma"} <= flags:
        assert "avx2" in ISAS
    if {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"} <= flags:
        assert "avx512" in ISAS
    # Best last: a machine with avx512 has avx2.
    assert [i for i in ISAS if i in ("avx2", "avx512")] in ([], ["avx2"], ["avx2", "avx512"])
    if not os.environ.get("MAMBART_CPU_ISA"):
        assert DEFAULT_ISA == ISAS[-1]


def test_set_isa_unknown(isa):
    with pytest.raises(ValueError, match="bogus"):
        _core.set_isa("bogus")
    assert _core.isa() == isa


def _run_with_isa(value):
    env = dict(os.environ, MAMBART_CPU_ISA=value)
    code = "from mambart import _core; print(_core.isa())"
    # Outside the source tree, so the installed package is the one imported.
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tempfile.gettempdir())


@pytest.mark.parametrize("name", ISAS)
def test_env_selects_isa(name):
    r = _run_with_isa(name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == name


def test_env_unknown_isa_errors():
    r = _run_with_isa("bogus")
    assert r.returncode == 1  # a Python exception, not a crash
    assert "ValueError" in r.stderr and "MAMBART_CPU_ISA" in r.stderr and "bogus" in r.stderr


# ---------------------------------------------------------------- matmul


@pytest.mark.parametrize("K", SIZES)
@pytest.mark.parametrize("M", BATCH)
def test_matmul(isa, M, K):
    rng = np.random.default_rng(K * 10 + M)
    x, w, b = rand(rng, M, K), rand(rng, 13, K), rand(rng, 13)
    assert_close(K_.matmul(x, w, b), ref.matmul(x, w, b))


@pytest.mark.parametrize("M", (1, 2, 3, 4, 5, 8, 9))
@pytest.mark.parametrize("N", (1, 3, 4, 5, 9))
def test_matmul_tiles(isa, M, N):
    rng = np.random.default_rng(M * 10 + N)
    x, w = rand(rng, M, 33), rand(rng, N, 33)
    assert_close(K_.matmul(x, w), ref.matmul(x, w))


@pytest.mark.parametrize("M, N, K", [(70, 100, 300), (37, 45, 1100), (1, 3072, 768)])
def test_matmul_blocks(isa, M, N, K):
    rng = np.random.default_rng(M + N + K)
    x, w, b = rand(rng, M, K), rand(rng, N, K), rand(rng, N)
    assert_close(K_.matmul(x, w, b), ref.matmul(x, w, b))


def test_matmul_strided(isa):
    rng = np.random.default_rng(1)
    xz = rand(rng, 5, 90)
    x = xz[:, 10:43]  # row stride 90, offset 10
    w, b = rand(rng, 11, 33), rand(rng, 11)
    out = np.full((5, 30), np.nan, np.float32)
    y = K_.matmul(x, w, b, out=out[:, 4:15])
    assert_close(y, ref.matmul(x, w, b))
    assert np.isnan(out[:, :4]).all() and np.isnan(out[:, 15:]).all()


def test_matmul_shape_errors():
    x, w = np.zeros((2, 8), np.float32), np.zeros((3, 9), np.float32)
    with pytest.raises(ValueError, match=r"\[matmul\] w has shape \(3, 9\), expected \(3, 8\)"):
        K_.matmul(x, w)
    with pytest.raises(ValueError, match=r"\[matmul\] x must be float32"):
        K_.matmul(x.astype(np.float64), w[:, :8].copy())
    with pytest.raises(ValueError, match=r"\[matmul\] w must be C-contiguous"):
        K_.matmul(x, np.zeros((3, 16), np.float32)[:, ::2])


# ---------------------------------------------------------------- matmul weight types

WTYPES = ("f32", "f16", "bf16", "q8", "q4")
MM_M = (1, 3, 4, 5, 8, 9, 130)  # decode rows 1..8, groups of 8 past that, GEMM tiles of 6 at 130
MM_K = (1, 31, 32, 33, 96, 257)  # partial and whole blocks of 32
MM_N = (1, 7, 48, 50)


def stored(rng, N, K, wtype, scale=1.0):
    """A random (N, K) weight in its stored form, and the float64 weights it stands for."""
    ws = K_.convert(rand(rng, N, K, scale=scale), wtype)
    return ws, ref.dequantize(ws, wtype, K)


@pytest.mark.parametrize("K", MM_K)
@pytest.mark.parametrize("wtype", WTYPES)
def test_dequantize_matches_reference(wtype, K):
    """kernels.dequantize (C++ dequantize_row) against the numpy decoder of the documented format."""
    rng = np.random.default_rng(K)
    w = rand(rng, 9, K, scale=2.0, shift=0.5)
    ws = K_.convert(w, wtype)
    assert ws.shape == (9, ref.row_bytes(wtype, K) // {"f32": 4, "f16": 2, "bf16": 2}.get(wtype, 1))
    got, want = K_.dequantize(ws, wtype, K), ref.dequantize(ws, wtype, K)
    assert got.dtype == np.float32 and got.shape == (9, K)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("wtype", WTYPES)
def test_quantization_error(wtype):
    """Round trip of convert: q8/q4 within d/2 of each weight, f16/bf16 within half an ulp."""
    rng = np.random.default_rng(7)
    K = 257  # a partial last block
    w = rand(rng, 16, K, scale=3.0, shift=0.7)
    w[0, :40] = 0.0  # an all-zero block (d = 0)
    w[1, ::5] *= 1e-6  # small values: f16 subnormals
    ws = K_.convert(w, wtype)
    err = np.abs(ref.dequantize(ws, wtype, K).astype(np.float64) - w)
    if wtype in ("q8", "q4"):
        d, _ = ref.block_params(ws, wtype, K)
        slack = 4 * np.finfo(np.float32).eps * (np.abs(w) + d)  # f32 rounding of d * q (+ m)
        assert np.all(err <= d / 2 + slack)
    else:
        mant = {"f32": 23, "f16": 10, "bf16": 7}[wtype]
        exp = np.floor(np.log2(np.maximum(np.abs(w), np.finfo(np.float32).tiny)))
        if wtype == "f16":
            exp = np.maximum(exp, -14)  # subnormal halves: fixed spacing 2^-24
        assert np.all(err <= np.exp2(exp - mant - 1))


@pytest.mark.parametrize("K", MM_K)
@pytest.mark.parametrize("M", MM_M)
@pytest.mark.parametrize("wtype", WTYPES)
def test_matmul_wtype(isa, wtype, M, K):
    N = MM_N[(MM_M.index(M) + MM_K.index(K)) % len(MM_N)]
    rng = np.random.default_rng(M * 1000 + K)
    ws, w = stored(rng, N, K, wtype)
    x = rand(rng, M, K)
    b = rand(rng, N) if (M + K) % 2 else None
    assert_close(K_.matmul(x, ws, b, wtype=wtype, K=K), ref.matmul(x, ws, b, wtype=wtype, K=K))


@pytest.mark.parametrize("K", MM_K)
@pytest.mark.parametrize("M", (1, 5, 7, 33, 130))
@pytest.mark.parametrize("wtype", WTYPES)
def test_matmul_wtype_prefill(isa, wtype, M, K):
    """A prefill's rows take the GEMM at any M (avx512: q8 and q4 in integers)."""
    N = (1, 16, 33, 70)[(M + K) % 4]
    rng = np.random.default_rng(M * 1000 + K + 1)
    ws, _ = stored(rng, N, K, wtype)
    x = rand(rng, M, K)
    b = rand(rng, N) if (M + K) % 2 else None
    assert_close(K_.matmul(x, ws, b, wtype=wtype, K=K, prefill=True),
                 ref.matmul(x, ws, b, wtype=wtype, K=K, prefill=True))


@pytest.mark.parametrize("wtype", WTYPES)
def test_matmul_prefill_row_bits_independent_of_m_and_split(isa, wtype):
    """A prompt cut into calls differently gives the same logits: a prefill row's bits
    do not depend on M, its position among the rows or the split of N."""
    rng = np.random.default_rng(17)
    N, K = 150, 1100  # partial panels and blocks, two passes over K
    ws, _ = stored(rng, N, K, wtype, scale=0.05)
    pool, b = rand(rng, 40, K), rand(rng, N)
    alone = np.stack([K_.matmul(pool[i:i + 1], ws, b, wtype=wtype, K=K, prefill=True)[0] for i in range(40)])
    for M in (2, 6, 7, 13, 33, 40):
        rows = (np.arange(M) * 7 + M) % 40
        np.testing.assert_array_equal(K_.matmul(pool[rows], ws, b, wtype=wtype, K=K, prefill=True), alone[rows],
                                      err_msg=f"M={M}")
        y = np.full((M, N), np.nan, np.float32)
        for n0, n1 in _split(N, 3):
            K_.matmul(pool[rows], ws[n0:n1], b[n0:n1], out=y[:, n0:n1], wtype=wtype, K=K, prefill=True)
        np.testing.assert_array_equal(y, alone[rows], err_msg=f"M={M} split")


@pytest.mark.parametrize("M", (9, 130))
@pytest.mark.parametrize("wtype", WTYPES)
def test_matmul_wtype_offset_blocks(isa, wtype, M):
    """q4's minimum folded as m * sum(x): weights far from zero, x of mixed sign."""
    rng = np.random.default_rng(3)
    ws, w = stored(rng, 50, 100, wtype, scale=0.1)
    w_shift = K_.convert(ref.dequantize(ws, wtype, 100) + np.float32(2.0), wtype)
    x = rand(rng, M, 100)
    assert_close(K_.matmul(x, w_shift, wtype=wtype, K=100), ref.matmul(x, w_shift, wtype=wtype, K=100))


@pytest.mark.parametrize("M", (1, 8, 9, 130))
@pytest.mark.parametrize("wtype", WTYPES)
def test_matmul_wtype_never_reads_x_past_k(isa, wtype, M):
    """x rows followed by NaN (a row-strided view): nothing past column K may reach y."""
    rng = np.random.default_rng(M)
    K = 33
    ws, w = stored(rng, 20, K, wtype)
    xz = np.full((M, 64), np.nan, np.float32)
    xz[:, :K] = rand(rng, M, K)
    x = xz[:, :K]
    out = np.full((M, 30), np.nan, np.float32)
    y = K_.matmul(x, ws, out=out[:, 5:25], wtype=wtype, K=K)
    assert_close(y, ref.matmul(x, ws, wtype=wtype, K=K))
    assert np.isnan(out[:, :5]).all() and np.isnan(out[:, 25:]).all()


@pytest.mark.parametrize("M", (1, 9, 40))
@pytest.mark.parametrize("wtype", WTYPES)
def test_matmul_wtype_non_finite_x_reaches_y(isa, wtype, M):
    """A NaN or an infinity in a row of x makes that row of y non-finite (q4 rounds x
    to int8 at decode: such a block must not turn into finite numbers)."""
    rng = np.random.default_rng(M + 5)
    K = 70
    ws, _ = stored(rng, 30, K, wtype)
    x = rand(rng, M, K)
    x[0, 5] = np.nan
    if M > 1:
        x[1, 40] = np.inf
    y = K_.matmul(x, ws, wtype=wtype, K=K)
    assert np.isnan(y[0]).all()
    assert not np.isfinite(y[1:2]).any()
    if M > 2:
        assert_close(y[2:], ref.matmul(x[2:], ws, wtype=wtype, K=K))


def _split(n, parts, grain=48):
    """The backend's thread ranges (thread_pool.cpp part_range)."""
    blocks = -(-n // grain)
    return [(min(n, blocks * i // parts * grain), min(n, blocks * (i + 1) // parts * grain)) for i in range(parts)]


@pytest.mark.parametrize("M", (1, 5, 8, 9, 33, 130))
@pytest.mark.parametrize("wtype", WTYPES)
def test_matmul_wtype_split_is_bit_identical(isa, wtype, M):
    """Ranges [n0, n1) as the backend splits N give exactly the one-call result."""
    rng = np.random.default_rng(M + 11)
    N, K = 150, 300
    ws, _ = stored(rng, N, K, wtype)
    x, b = rand(rng, M, K), rand(rng, N)
    whole = K_.matmul(x, ws, b, wtype=wtype, K=K)
    for parts in (2, 3):
        y = np.full((M, N), np.nan, np.float32)
        for n0, n1 in _split(N, parts):
            K_.matmul(x, ws[n0:n1], b[n0:n1], out=y[:, n0:n1], wtype=wtype, K=K)
        np.testing.assert_array_equal(y, whole)


@pytest.mark.parametrize("K", (300, 768))
@pytest.mark.parametrize("wtype", ("f32", "f16", "bf16"))
def test_matmul_dense_decode_row_bits_independent_of_m(isa, wtype, K):
    """Continuous batching steps any number of rows: a row of x gets the same bits
    for every decode M (1..kMatmulDecodeRows = 32) and at every position among the
    M rows, those of M = 1 with this ISA."""
    rng = np.random.default_rng(K)
    N = 150  # more than one chunk of output columns
    ws, _ = stored(rng, N, K, wtype, scale=0.05)
    pool, b = rand(rng, 33, K), rand(rng, N)
    alone = np.stack([K_.matmul(pool[i:i + 1], ws, b, wtype=wtype, K=K)[0] for i in range(33)])
    assert_close(alone, ref.matmul(pool, ws, b, wtype=wtype, K=K))
    for M in range(1, 33):
        for shift in sorted({0, M // 2, 33 - M}):  # each pool row at several positions
            rows = (np.arange(M) + shift + 7 * M) % 33
            np.testing.assert_array_equal(K_.matmul(pool[rows], ws, b, wtype=wtype, K=K), alone[rows],
                                          err_msg=f"M={M} rows={rows.tolist()}")


def test_matmul_wtype_empty():
    for wtype in WTYPES:
        ws = K_.convert(np.zeros((3, 0), np.float32), wtype)
        y = K_.matmul(np.zeros((2, 0), np.float32), ws, np.arange(3, dtype=np.float32), wtype=wtype, K=0)
        assert_close(y, np.tile(np.arange(3), (2, 1)))


def test_matmul_wtype_errors():
    x = np.zeros((2, 40), np.float32)
    q8 = K_.convert(np.zeros((3, 40), np.float32), "q8")  # (3, 72): two blocks of 36 bytes
    with pytest.raises(ValueError, match=r"\[matmul\] unknown weight type 'q5'"):
        K_.matmul(x, q8, wtype="q5", K=40)
    with pytest.raises(ValueError, match=r"\[matmul\] K must be given for weight type q8"):
        K_.matmul(x, q8, wtype="q8")
    with pytest.raises(ValueError, match=r"\[matmul\] w has shape \(3, 72\), expected \(3, 108\)"):
        K_.matmul(np.zeros((2, 80), np.float32), q8, wtype="q8", K=80)
    with pytest.raises(ValueError, match=r"\[matmul\] x has shape \(2, 40\), expected \(2, 33\)"):
        K_.matmul(x, K_.convert(np.zeros((3, 33), np.float32), "q8"), wtype="q8", K=33)
    with pytest.raises(ValueError, match=r"\[matmul\] w of type bf16 must be uint16, got float32"):
        K_.matmul(x, np.zeros((3, 40), np.float32), wtype="bf16")
    with pytest.raises(ValueError, match=r"\[convert\] unknown weight type 'int8'"):
        K_.convert(np.zeros((3, 40), np.float32), "int8")
    with pytest.raises(ValueError, match=r"\[dequantize\] K must be given for weight type q4"):
        K_.dequantize(q8, "q4")
    with pytest.raises(ValueError, match=r"\[dequantize\] w has shape \(3, 72\), expected \(3, 48\)"):
        K_.dequantize(q8, "q4", K=40)


# ---------------------------------------------------------------- rmsnorm


@pytest.mark.parametrize("with_add", (False, True))
@pytest.mark.parametrize("dim", SIZES)
@pytest.mark.parametrize("rows", BATCH)
def test_rmsnorm(isa, rows, dim, with_add):
    rng = np.random.default_rng(dim * 10 + rows)
    residual, weight = rand(rng, rows, dim, scale=3.0), rand(rng, dim)
    add = rand(rng, rows, dim) if with_add else None
    want, want_residual = ref.rmsnorm(residual, weight, add, eps=1e-5)
    got = K_.rmsnorm(residual, weight, add, eps=1e-5)
    assert_close(got, want)
    assert_close(residual, want_residual)


# ---------------------------------------------------------------- conv1d


@pytest.mark.parametrize("L", (1, 6))
@pytest.mark.parametrize("K", (1, 2, 3, 4))
@pytest.mark.parametrize("C", SIZES)
def test_conv1d_prefill(isa, C, K, L):
    rng = np.random.default_rng(C * 100 + K * 10 + L)
    x, w, b, state = rand(rng, L, C), rand(rng, C, K), rand(rng, C), rand(rng, C, K)
    want, want_state = ref.conv1d_prefill(x, w, b, state)
    assert_close(K_.conv1d_prefill(x, w, b, state), want)
    assert_close(state, want_state)


@pytest.mark.parametrize("K", (1, 2, 3, 4))
@pytest.mark.parametrize("C", SIZES)
@pytest.mark.parametrize("batch", BATCH)
def test_conv1d_step(isa, batch, C, K):
    rng = np.random.default_rng(C * 100 + K * 10 + batch)
    x, w, b, state = rand(rng, batch, C), rand(rng, C, K), rand(rng, C), rand(rng, batch, C, K)
    want, want_state = ref.conv1d_step(x, w, b, state)
    assert_close(K_.conv1d_step(x, w, b, state), want)
    assert_close(state, want_state)


@pytest.mark.parametrize("K", (1, 2, 3, 4))
def test_conv1d_state_handoff(isa, K):
    """prefill(L) == prefill(L1) + prefill(L2) == prefill(L1) + L2 steps, from a
    zero state, to the bit: a prompt cache's states and a decode continue a
    prefill exactly."""
    rng = np.random.default_rng(K)
    C, L1, L = 33, 2, 7
    x, w, b = rand(rng, L, C), rand(rng, C, K), rand(rng, C)
    s_full = np.zeros((C, K), np.float32)
    y_full = K_.conv1d_prefill(x, w, b, s_full)
    want, want_state = ref.conv1d_prefill(x, w, b, np.zeros((C, K)))
    assert_close(y_full, want)
    assert_close(s_full, want_state)

    s = np.zeros((C, K), np.float32)
    y = np.concatenate([K_.conv1d_prefill(x[:L1], w, b, s), K_.conv1d_prefill(x[L1:], w, b, s)])
    np.testing.assert_array_equal(y, y_full)
    np.testing.assert_array_equal(s, s_full)

    s = np.zeros((1, C, K), np.float32)
    ys = [K_.conv1d_prefill(x[:L1], w, b, s[0])]
    ys += [K_.conv1d_step(x[t : t + 1], w, b, s) for t in range(L1, L)]
    np.testing.assert_array_equal(np.concatenate(ys), y_full)
    np.testing.assert_array_equal(s[0], s_full)


def test_conv1d_strided(isa):
    """x is the first half of an in_proj output row, y written into a wider buffer."""
    rng = np.random.default_rng(2)
    E, K, L = 19, 4, 5
    xz, w, b, state = rand(rng, L, 2 * E), rand(rng, E, K), rand(rng, E), rand(rng, E, K)
    want, want_state = ref.conv1d_prefill(xz[:, :E], w, b, state)
    buf = np.zeros((L, 3 * E), np.float32)
    K_.conv1d_prefill(xz[:, :E], w, b, state, out=buf[:, E : 2 * E])
    assert_close(buf[:, E : 2 * E], want)
    assert_close(state, want_state)
    assert not buf[:, :E].any() and not buf[:, 2 * E :].any()


# ---------------------------------------------------------------- scan


def scan_inputs(rng, rows, E, N, dt_shift=-1.0):
    return dict(
        x=rand(rng, rows, E),
        dt=rand(rng, rows, E, scale=0.5, shift=dt_shift),
        dt_bias=rand(rng, E, scale=0.1),
        A=-np.exp(rand(rng, E, N, scale=0.5)),
        B=rand(rng, rows, N),
        C=rand(rng, rows, N),
        D=rand(rng, E),
        z=rand(rng, rows, E),
    )


@pytest.mark.parametrize("E", SIZES)
@pytest.mark.parametrize("N", (16,))
def test_scan_prefill(isa, E, N):
    rng = np.random.default_rng(E)
    a = scan_inputs(rng, 5, E, N)
    state = rand(rng, E, N)
    want, want_state = ref.scan_prefill(**a, state=state)
    assert_close(K_.scan_prefill(**a, state=state), want)
    assert_close(state, want_state)


@pytest.mark.parametrize("N", (1, 7, 8, 9, 16, 17, 32, 33))
@pytest.mark.parametrize("with_z", (False, True))
def test_scan_prefill_state_sizes(isa, N, with_z):
    rng = np.random.default_rng(N)
    a = scan_inputs(rng, 4, 11, N)
    if not with_z:
        a["z"] = None
    state = rand(rng, 11, N)
    want, want_state = ref.scan_prefill(**a, state=state)
    assert_close(K_.scan_prefill(**a, state=state), want)
    assert_close(state, want_state)


@pytest.mark.parametrize("with_z", (False, True))
@pytest.mark.parametrize("E", SIZES)
@pytest.mark.parametrize("batch", BATCH)
def test_scan_step(isa, batch, E, with_z):
    rng = np.random.default_rng(E * 10 + batch)
    a = scan_inputs(rng, batch, E, 16)
    if not with_z:
        a["z"] = None
    state = rand(rng, batch, E, 16)
    want, want_state = ref.scan_step(**a, state=state)
    assert_close(K_.scan_step(**a, state=state), want)
    assert_close(state, want_state)


def test_scan_state_handoff(isa):
    """prefill(L) == prefill(L1) + prefill(L2) == prefill(L1) + L2 steps, from a
    zero state, to the bit (as for conv1d)."""
    rng = np.random.default_rng(3)
    E, N, L, L1 = 33, 16, 7, 3
    a = scan_inputs(rng, L, E, N)
    rows = lambda lo, hi: {k: (v[lo:hi] if k in ("x", "dt", "B", "C", "z") else v) for k, v in a.items()}

    s_full = np.zeros((E, N), np.float32)
    y_full = K_.scan_prefill(**a, state=s_full)
    want, want_state = ref.scan_prefill(**a, state=np.zeros((E, N)))
    assert_close(y_full, want)
    assert_close(s_full, want_state)

    s = np.zeros((E, N), np.float32)
    y = np.concatenate([K_.scan_prefill(**rows(0, L1), state=s), K_.scan_prefill(**rows(L1, L), state=s)])
    np.testing.assert_array_equal(y, y_full)
    np.testing.assert_array_equal(s, s_full)

    s = np.zeros((1, E, N), np.float32)
    ys = [K_.scan_prefill(**rows(0, L1), state=s[0])]
    ys += [K_.scan_step(**rows(t, t + 1), state=s) for t in range(L1, L)]
    np.testing.assert_array_equal(np.concatenate(ys), y_full)
    np.testing.assert_array_equal(s[0], s_full)


@pytest.mark.parametrize("step", (False, True))
def test_scan_strided(isa, step):
    """dt, B, C are column slices of one projection output row, x and z halves of in_proj's."""
    rng = np.random.default_rng(4)
    rows, E, N = 3, 21, 16
    xz = rand(rng, rows, 2 * E)
    proj = rand(rng, rows, E + 2 * N + 5)
    a = scan_inputs(rng, rows, E, N)
    a.update(x=xz[:, :E], z=xz[:, E:], dt=proj[:, :E], B=proj[:, E : E + N], C=proj[:, E + N : E + 2 * N])
    state = rand(rng, *((rows, E, N) if step else (E, N)))
    fn, rfn = (K_.scan_step, ref.scan_step) if step else (K_.scan_prefill, ref.scan_prefill)
    want, want_state = rfn(**a, state=state)
    out = np.zeros((rows, E + 3), np.float32)
    fn(**a, state=state, out=out[:, 3:])
    assert_close(out[:, 3:], want)
    assert_close(state, want_state)


def test_scan_softplus_threshold(isa):
    """dt + dt_bias around 20, where softplus switches to the identity, and far beyond."""
    rng = np.random.default_rng(5)
    E, N = 12, 16
    a = scan_inputs(rng, 2, E, N)
    a["dt_bias"] = np.zeros(E, np.float32)
    a["dt"] = np.array([[19.9, 19.999, 20.0, 20.001, 20.1, -20.0, -100.0, 25, 1e4, -1e4, 0.0, 1.0]] * 2,
                       np.float32)
    a["A"] = -np.exp(rand(rng, E, N, scale=0.5, shift=-4.0))  # keep exp(delta A) away from 0
    state = rand(rng, E, N)
    want, want_state = ref.scan_prefill(**a, state=state)
    assert_close(K_.scan_prefill(**a, state=state), want)
    assert_close(state, want_state)


def test_scan_decay_range(isa):
    """exp(delta A) over its whole range, one token with B = 0 so that the state is exp(delta A) h
    alone, checked per element: 1 (A = 0), values near 1, the edge where exp turns subnormal
    (x = delta A around -87.3 to -88.7: below 2^-126.5 a kernel may give 0), and full decay
    (x down to -1e5). Then a NaN in A, which must reach the output and the state."""
    rng = np.random.default_rng(8)
    E, N = 3, 16
    a = scan_inputs(rng, 1, E, N)
    a["B"] = np.zeros((1, N), np.float32)
    a["dt_bias"] = np.zeros(E, np.float32)
    a["dt"] = np.full((1, E), 20.5, np.float32)  # softplus is the identity here: delta = 20.5
    x = np.concatenate([[0.0, -1e-6, -0.01, -1.0], -np.linspace(20.0, 87.0, 4), -np.linspace(87.5, 89.0, 4),
                        [-150.0, -1e3, -1e4, -1e5]])
    a["A"] = np.stack([x, x[::-1], x]).astype(np.float32) / np.float32(20.5)
    state = rand(rng, E, N)
    h = state.astype(np.float64).copy()
    want, want_state = ref.scan_prefill(**a, state=state)
    assert_close(K_.scan_prefill(**a, state=state), want)
    decay = np.exp(20.5 * a["A"].astype(np.float64))
    normal = decay >= 2.0 ** -126
    assert_close(state[normal], want_state[normal], per_element=True)
    assert np.all(np.abs(state[~normal]) <= 2.0 ** -126 * np.abs(h[~normal]))  # subnormal or 0
    a["A"][2, 5] = np.nan
    state = rand(rng, E, N)
    got = K_.scan_prefill(**a, state=state)
    assert np.isnan(got[:, 2]).all() and np.isnan(state[2, 5]) and np.isfinite(got[:, :2]).all()


@pytest.mark.parametrize("N", (13, 16))
def test_scan_huge_delta(isa, N):
    """delta near FLT_MAX (dt + dt_bias of 3e38): exp(delta A) is 0 for every A < 0 and 1 where A
    is 0 (an A_log below about -103 rounds A to -0), and the masked tail lanes of N = 13 add
    nothing, as in float64."""
    rng = np.random.default_rng(9)
    E = 4
    a = scan_inputs(rng, 2, E, N)
    a["dt"] = np.full((2, E), 3e38, np.float32)
    a["dt_bias"] = np.zeros(E, np.float32)
    a["x"] = np.full((2, E), 1e-30, np.float32)
    a["A"][1, 3] = -0.0
    state = rand(rng, E, N)
    want, want_state = ref.scan_prefill(**a, state=state)
    got = K_.scan_prefill(**a, state=state)
    assert np.isfinite(got).all() and np.isfinite(state).all()
    assert_close(got, want)
    assert_close(state, want_state)


def test_scan_shape_errors():
    rng = np.random.default_rng(6)
    a = scan_inputs(rng, 2, 8, 16)
    with pytest.raises(ValueError, match=r"\[scan_prefill\] state has shape \(8, 15\), expected \(8, 16\)"):
        K_.scan_prefill(**a, state=np.zeros((8, 15), np.float32))
    a["B"] = a["B"][:, :4]
    with pytest.raises(ValueError, match=r"\[scan_step\] B has shape \(2, 4\), expected \(2, 16\)"):
        K_.scan_step(**a, state=np.zeros((2, 8, 16), np.float32))


# ---------------------------------------------------------------- ssd


def ssd_inputs(rng, rows, H, P, G, N, dt_shift=-1.0, d_per_channel=False):
    return dict(
        x=rand(rng, rows, H * P),
        dt=rand(rng, rows, H, scale=0.5, shift=dt_shift),
        dt_bias=rand(rng, H, scale=0.1),
        A=-np.exp(rand(rng, H, scale=0.5)),
        B=rand(rng, rows, G * N),
        C=rand(rng, rows, G * N),
        D=rand(rng, H * P if d_per_channel else H),
    )


def ssd_rows(a, lo, hi):
    return {k: (v[lo:hi] if k in ("x", "dt", "B", "C") else v) for k, v in a.items()}


# (P, N) pairs straddling the 8-float width in both dimensions, and the real N = 64.
SSD_PN = ((1, 1), (7, 9), (8, 8), (9, 17), (33, 7), (8, 64))


@pytest.mark.parametrize("chunk", (1, 3, 8, 64))
@pytest.mark.parametrize("L", (1, 5, 64, 70))
@pytest.mark.parametrize("G", (1, 2))
@pytest.mark.parametrize("P, N", SSD_PN)
def test_ssd_prefill(isa, P, N, G, L, chunk):
    """Chunked prefill from a non-zero state against the token-by-token recurrence."""
    rng = np.random.default_rng(P * 1000 + N * 10 + G + L + chunk)
    H = 2 * G
    a = ssd_inputs(rng, L, H, P, G, N)
    state = rand(rng, H, P, N)
    want, want_state = ref.ssd_recurrent(**a, state=state, groups=G)
    assert_close(K_.ssd_prefill(**a, state=state, groups=G, chunk=chunk), want)
    assert_close(state, want_state)


@pytest.mark.parametrize("P, N", SSD_PN)
@pytest.mark.parametrize("G", (1, 2))
@pytest.mark.parametrize("batch", BATCH)
def test_ssd_step(isa, batch, G, P, N):
    rng = np.random.default_rng(P * 1000 + N * 10 + G + batch)
    H = 3 * G
    a = ssd_inputs(rng, batch, H, P, G, N)
    state = rand(rng, batch, H, P, N)
    want, want_state = ref.ssd_step(**a, state=state, groups=G)
    assert_close(K_.ssd_step(**a, state=state, groups=G), want)
    assert_close(state, want_state)


@pytest.mark.parametrize("G", (1, 2))
def test_ssd_state_handoff(isa, G):
    """prefill(L) == prefill(L1) + prefill(L2) == prefill(L1) + L2 steps, from a zero state,
    with the default limits (0, inf) so that the unclamped step agrees."""
    rng = np.random.default_rng(8 + G)
    H, P, N, L, L1, chunk = 2 * G, 9, 17, 21, 5, 8
    a = ssd_inputs(rng, L, H, P, G, N)

    s_full = np.zeros((H, P, N), np.float32)
    y_full = K_.ssd_prefill(**a, state=s_full, groups=G, chunk=chunk)
    want, want_state = ref.ssd_recurrent(**a, state=np.zeros((H, P, N)), groups=G)
    assert_close(y_full, want)
    assert_close(s_full, want_state)

    s = np.zeros((H, P, N), np.float32)
    y = np.concatenate([K_.ssd_prefill(**ssd_rows(a, 0, L1), state=s, groups=G, chunk=chunk),
                        K_.ssd_prefill(**ssd_rows(a, L1, L), state=s, groups=G, chunk=chunk)])
    assert_close(y, y_full)
    assert_close(s, s_full)

    s = np.zeros((1, H, P, N), np.float32)
    ys = [K_.ssd_prefill(**ssd_rows(a, 0, L1), state=s[0], groups=G, chunk=chunk)]
    ys += [K_.ssd_step(**ssd_rows(a, t, t + 1), state=s, groups=G) for t in range(L1, L)]
    assert_close(np.concatenate(ys), y_full)
    assert_close(s[0], s_full)


def test_ssd_prefill_dt_limits(isa):
    """A finite (dt_min, dt_max) clamps delta in prefill, and changes the result."""
    rng = np.random.default_rng(9)
    H, P, N, L = 4, 8, 16, 20
    a = ssd_inputs(rng, L, H, P, 2, N, dt_shift=0.0)
    a["dt"] = rand(rng, L, H, scale=3.0)  # softplus spans ~0.005 .. 9
    state = rand(rng, H, P, N)
    s = state.copy()
    y = K_.ssd_prefill(**a, state=s, groups=2, chunk=8, dt_min=0.05, dt_max=0.8)
    want, want_state = ref.ssd_recurrent(**a, state=state, groups=2, dt_min=0.05, dt_max=0.8)
    assert_close(y, want)
    assert_close(s, want_state)
    unclamped, _ = ref.ssd_recurrent(**a, state=state, groups=2)
    assert np.abs(want - unclamped).max() > 0.1 * np.abs(unclamped).max()


@pytest.mark.parametrize("step", (False, True))
def test_ssd_d_per_channel(isa, step):
    rng = np.random.default_rng(10)
    H, P, N, rows = 4, 9, 8, 6
    a = ssd_inputs(rng, rows, H, P, 2, N, d_per_channel=True)
    state = rand(rng, *((rows, H, P, N) if step else (H, P, N)))
    if step:
        want, want_state = ref.ssd_step(**a, state=state, groups=2)
        got = K_.ssd_step(**a, state=state, groups=2)
    else:
        want, want_state = ref.ssd_recurrent(**a, state=state, groups=2)
        got = K_.ssd_prefill(**a, state=state, groups=2, chunk=4)
    assert_close(got, want)
    assert_close(state, want_state)


@pytest.mark.parametrize("step", (False, True))
def test_ssd_extreme_dt(isa, step):
    """dt + dt_bias around softplus's threshold of 20, far above it (decay exp(delta A)
    underflows to 0) and far below (delta ~ 0: the state only decays)."""
    rng = np.random.default_rng(11)
    H, P, N = 12, 8, 16
    row = [19.9, 20.0, 20.001, 25.0, 1e4, -20.0, -100.0, -1e4, 0.0, 1.0, 20.1, 30.0]
    dt = np.array([row, row[6:] + row[:6], row[::-1], row[3:] + row[:3]], np.float32)
    a = ssd_inputs(rng, len(dt), H, P, 1, N)
    a.update(dt=dt, dt_bias=np.zeros(H, np.float32))
    a["A"] = -np.exp(rand(rng, H, scale=0.5, shift=-4.0))  # keep some exp(delta A) away from 0
    state = rand(rng, *((len(dt), H, P, N) if step else (H, P, N)))
    if step:
        want, want_state = ref.ssd_step(**a, state=state, groups=1)
        got = K_.ssd_step(**a, state=state, groups=1)
    else:
        want, want_state = ref.ssd_recurrent(**a, state=state, groups=1)
        got = K_.ssd_prefill(**a, state=state, groups=1, chunk=3)
    assert_close(got, want)
    assert_close(state, want_state)


@pytest.mark.parametrize("big", (300.0, 1e4))
def test_ssd_prefill_large_decay(isa, big):
    """One token with a huge delta early in a chunk, ordinary ones after: the later tokens'
    decays exp(s_i - s_j) must come from sums of delta A over (j, i], not from the difference
    of two cumulative sums near -big (which loses ~1e-4 relative at big = 1e4)."""
    rng = np.random.default_rng(16)
    H, P, N, L = 2, 8, 16, 64
    a = ssd_inputs(rng, L, H, P, 1, N, dt_shift=-2.0)
    a["dt_bias"] = np.zeros(H, np.float32)
    a["dt"][1] = big
    state = rand(rng, H, P, N)
    want, want_state = ref.ssd_recurrent(**a, state=state, groups=1)
    assert_close(K_.ssd_prefill(**a, state=state, groups=1, chunk=64), want)
    assert_close(state, want_state)


@pytest.mark.parametrize("step", (False, True))
def test_ssd_strided(isa, step):
    """x, B, C are column slices of one conv output row, dt a slice of in_proj's; y into a wider buffer."""
    rng = np.random.default_rng(12)
    rows, H, P, G, N = 5, 4, 9, 2, 17
    E = H * P
    xbc = rand(rng, rows, E + 2 * G * N)
    proj = rand(rng, rows, 3 + H + 7, scale=0.5, shift=-1.0)
    a = ssd_inputs(rng, rows, H, P, G, N)
    a.update(x=xbc[:, :E], B=xbc[:, E : E + G * N], C=xbc[:, E + G * N :], dt=proj[:, 3 : 3 + H])
    state = rand(rng, *((rows, H, P, N) if step else (H, P, N)))
    out = np.zeros((rows, E + 5), np.float32)
    if step:
        want, want_state = ref.ssd_step(**a, state=state, groups=G)
        K_.ssd_step(**a, state=state, groups=G, out=out[:, 5:])
    else:
        want, want_state = ref.ssd_recurrent(**a, state=state, groups=G)
        K_.ssd_prefill(**a, state=state, groups=G, chunk=2, out=out[:, 5:])
    assert_close(out[:, 5:], want)
    assert_close(state, want_state)
    assert not out[:, :5].any()


def test_ssd_shape_errors():
    rng = np.random.default_rng(13)
    a = ssd_inputs(rng, 2, 4, 8, 2, 16)
    state = np.zeros((4, 8, 16), np.float32)
    with pytest.raises(ValueError, match=r"\[ssd_prefill\] groups must divide the 4 heads, got 3"):
        K_.ssd_prefill(**a, state=state, groups=3, chunk=8)
    with pytest.raises(ValueError, match=r"\[ssd_prefill\] chunk must be at least 1, got 0"):
        K_.ssd_prefill(**a, state=state, groups=2, chunk=0)
    with pytest.raises(ValueError, match=r"\[ssd_prefill\] B has shape \(2, 32\), expected \(2, 16\)"):
        K_.ssd_prefill(**a, state=state, groups=1, chunk=8)
    with pytest.raises(ValueError, match=r"\[ssd_step\] x must be 2-D and state 4-D"):
        K_.ssd_step(**a, state=state, groups=2)
    # H, P, N come from the state
    with pytest.raises(ValueError, match=r"\[ssd_step\] B has shape \(2, 32\), expected \(2, 30\)"):
        K_.ssd_step(**a, state=np.zeros((2, 4, 8, 15), np.float32), groups=2)
    with pytest.raises(ValueError, match=r"\[ssd_step\] D has shape \(5,\), expected \(4,\)"):
        K_.ssd_step(**dict(a, D=np.zeros(5, np.float32)), state=np.zeros((2, 4, 8, 16), np.float32), groups=2)


def test_ssd_empty(isa):
    rng = np.random.default_rng(14)
    a = ssd_inputs(rng, 0, 2, 8, 1, 16)
    state = np.ones((2, 8, 16), np.float32)
    y = K_.ssd_prefill(**a, state=state, groups=1, chunk=64)
    assert y.shape == (0, 16) and (state == 1).all()


# ---------------------------------------------------------------- rmsnorm_gated


@pytest.mark.parametrize("norm_before_gate", (False, True))
@pytest.mark.parametrize("groups", (1, 4))
@pytest.mark.parametrize("group", (1, 7, 8, 9, 33))
@pytest.mark.parametrize("rows", BATCH)
def test_rmsnorm_gated(isa, rows, group, groups, norm_before_gate):
    rng = np.random.default_rng(rows * 100 + group * 10 + groups)
    dim = group * groups
    x, z, w = rand(rng, rows, dim, scale=3.0), rand(rng, rows, dim, scale=3.0), rand(rng, dim)
    assert_close(K_.rmsnorm_gated(x, z, w, group, norm_before_gate=norm_before_gate),
                 ref.rmsnorm_gated(x, z, w, group, norm_before_gate=norm_before_gate))


def test_rmsnorm_gated_strided(isa):
    """z and x as slices of wider rows (as in the Mamba-2 block), out into a wider buffer."""
    rng = np.random.default_rng(15)
    rows, dim, group = 3, 40, 10
    zx = rand(rng, rows, 2 * dim + 6, scale=2.0)
    z, x, w = zx[:, :dim], zx[:, dim + 3 : 2 * dim + 3], rand(rng, dim)
    out = np.zeros((rows, dim + 4), np.float32)
    K_.rmsnorm_gated(x, z, w, group, eps=1e-3, out=out[:, 4:])
    assert_close(out[:, 4:], ref.rmsnorm_gated(x, z, w, group, eps=1e-3))
    assert not out[:, :4].any()
    with pytest.raises(ValueError, match=r"\[rmsnorm_gated\] group must divide dim 40, got 7"):
        K_.rmsnorm_gated(x, z, w, 7)


# ---------------------------------------------------------------- elementwise


@pytest.mark.parametrize("n", SIZES)
def test_elementwise(isa, n):
    rng = np.random.default_rng(n)
    x, z = rand(rng, n, scale=5.0), rand(rng, n, scale=5.0)
    assert_close(K_.silu(x), ref.silu(x))
    assert_close(K_.softplus(x), ref.softplus(x))
    assert_close(K_.gate_silu(x, z), ref.gate_silu(x, z))
    assert_close(K_.gate_gelu(x, z), ref.gate_gelu(x, z))


EXTREMES = np.array([100, -100, 20, -20, np.nextafter(20, 21), np.nextafter(20, 19), 19.5, 20.5,
                     -1e4, 1e4, 88, 89, -88, -89, -104, 0, -0.0, 1e-7, -1e-7, np.inf, -np.inf],
                    np.float32)


def test_activation_extremes(isa):
    x = EXTREMES
    assert_close(K_.softplus(x), ref.softplus(x))
    finite = x[np.isfinite(x)]  # silu(-inf) is -inf * 0
    assert_close(K_.silu(finite), ref.silu(finite))
    assert_close(K_.gate_silu(np.ones_like(finite), finite), ref.silu(finite))
    assert_close(K_.gate_gelu(np.ones_like(finite), finite), ref.gate_gelu(np.ones_like(finite), finite))
    nan = np.full(9, np.nan, np.float32)
    assert np.isnan(K_.silu(nan)).all() and np.isnan(K_.softplus(nan)).all()


def test_activation_accuracy(isa):
    """Every normal-range result within 1e-5 relative of float64, not just the largest."""
    x = np.linspace(-85.0, 30.0, 20001, dtype=np.float32)
    assert_close(K_.softplus(x), ref.softplus(x), per_element=True)
    assert_close(K_.silu(x), ref.silu(x), per_element=True)


def test_elementwise_shapes(isa):
    rng = np.random.default_rng(7)
    x, z = rand(rng, 3, 4, 5), rand(rng, 3, 4, 5)
    out = np.empty_like(x)
    assert K_.gate_silu(x, z, out=out) is out
    assert_close(out, ref.gate_silu(x, z))
    with pytest.raises(ValueError, match=r"\[gate_silu\] z has shape \(3, 4\), expected \(3, 4, 5\)"):
        K_.gate_silu(x, z[:, :, 0].copy())


def test_empty_inputs(isa):
    """Zero tokens leave states untouched; K = 0 gives y = bias."""
    z = np.zeros
    y = K_.matmul(z((2, 0), np.float32), z((3, 0), np.float32), np.arange(3, dtype=np.float32))
    assert_close(y, np.tile(np.arange(3), (2, 1)))
    state = np.ones((9, 4), np.float32)
    assert K_.conv1d_prefill(z((0, 9), np.float32), state.copy(), None, state).shape == (0, 9)
    assert (state == 1).all()
    state = np.ones((9, 16), np.float32)
    e, t = z(9, np.float32), z((0, 9), np.float32)
    y = K_.scan_prefill(t, t, e, -state, z((0, 16), np.float32), z((0, 16), np.float32), e, None, state)
    assert y.shape == (0, 9) and (state == 1).all()


# ---------------------------------------------------------------- f32p: f32 in the GEMM's panels

F32P_M = (1, 2, 5, 6, 7, 12, 13, 16, 31, 32, 33, 130)  # decode tiles of 6, prefill tiles of 12
F32P_N = (1, 7, 16, 17, 48, 64, 65, 150)  # partial, whole and several panels, tiles of 32 and 64
F32P_K = (1, 31, 96, 257, 1100)  # K blocks of at most 1024


def panels(w):
    """The f32p form of w (N, K) as kernels/quantize.h defines it, in numpy."""
    N, K = w.shape
    Np = -(-N // 16) * 16
    padded = np.zeros((Np, K), np.float32)
    padded[:N] = w
    return padded.reshape(Np // 16, 16, K).transpose(0, 2, 1).reshape(Np, K)


@pytest.mark.parametrize("N", F32P_N)
def test_f32p_layout(N):
    """convert packs as documented (rows past N zero); dequantize (panel_row) gives w back exactly."""
    rng = np.random.default_rng(N)
    w = rand(rng, N, 37)
    wp = K_.convert(w, "f32p")
    np.testing.assert_array_equal(wp, panels(w))
    np.testing.assert_array_equal(K_.dequantize(wp, "f32p", N=N), w)


@pytest.mark.parametrize("K", F32P_K)
@pytest.mark.parametrize("M", F32P_M)
def test_matmul_f32p(isa, M, K):
    N = F32P_N[(F32P_M.index(M) + F32P_K.index(K)) % len(F32P_N)]
    rng = np.random.default_rng(M * 1000 + K)
    x, w, b = rand(rng, M, K), rand(rng, N, K), rand(rng, N) if (M + K) % 2 else None
    assert_close(K_.matmul(x, K_.convert(w, "f32p"), b, wtype="f32p", N=N), ref.matmul(x, w, b))


def test_matmul_f32p_bits_independent_of_m_split_and_isa():
    """Every output is one FMA chain in k order from the bias: a row of x gets the same
    bits alone or at any position of any batch, over any whole-panel split of N, on every
    ISA (scalar's std::fma included)."""
    rng = np.random.default_rng(5)
    N, K = 150, 1100  # a partial last panel, two K blocks
    wp, b = K_.convert(rand(rng, N, K, scale=0.05), "f32p"), rand(rng, N)
    pool = rand(rng, 40, K)
    want = None
    try:
        for name in ISAS:
            _core.set_isa(name)
            alone = np.stack([K_.matmul(pool[i:i + 1], wp, b, wtype="f32p", N=N)[0] for i in range(40)])
            if want is None:
                want = alone
            np.testing.assert_array_equal(alone, want, err_msg=name)
            for M in (2, 6, 7, 16, 32, 33, 40):
                rows = (np.arange(M) * 7 + M) % 40
                np.testing.assert_array_equal(K_.matmul(pool[rows], wp, b, wtype="f32p", N=N), want[rows],
                                              err_msg=f"{name} M={M}")
                y = np.full((M, N), np.nan, np.float32)
                for n0, n1 in ((0, 64), (64, 128), (128, N)):  # the backend's ranges: whole panels
                    K_.matmul(pool[rows], wp[n0:-(-n1 // 16) * 16], b[n0:n1], out=y[:, n0:n1], wtype="f32p",
                              N=n1 - n0)
                np.testing.assert_array_equal(y, want[rows], err_msg=f"{name} M={M} split")
    finally:
        _core.set_isa(DEFAULT_ISA)


@pytest.mark.parametrize("M", (1, 9, 40))
def test_matmul_f32p_non_finite_x_reaches_y(isa, M):
    rng = np.random.default_rng(M)
    x, w = rand(rng, M, 70), rand(rng, 30, 70)
    x[0, 5] = np.nan
    y = K_.matmul(x, K_.convert(w, "f32p"), wtype="f32p", N=30)
    assert np.isnan(y[0]).all()
    assert_close(y[1:], ref.matmul(x[1:], w))


def test_matmul_f32p_empty_and_errors():
    wp = K_.convert(np.zeros((3, 0), np.float32), "f32p")
    assert wp.shape == (16, 0)
    y = K_.matmul(np.zeros((2, 0), np.float32), wp, np.arange(3, dtype=np.float32), wtype="f32p", N=3)
    assert_close(y, np.tile(np.arange(3), (2, 1)))
    x, wp = np.zeros((2, 40), np.float32), K_.convert(np.zeros((20, 40), np.float32), "f32p")
    with pytest.raises(ValueError, match=r"\[matmul\] N = 40 does not fit 32 stored rows of f32p"):
        K_.matmul(x, wp, wtype="f32p", N=40)
    with pytest.raises(ValueError, match=r"\[matmul\] N is given only for f32p"):
        K_.matmul(x, np.zeros((20, 40), np.float32), N=20)
    with pytest.raises(ValueError, match=r"\[matmul\] w has shape \(20, 40\), expected \(32, 40\)"):
        K_.matmul(x, np.zeros((20, 40), np.float32), wtype="f32p")
