"""float64 numpy references, written from the reference doc (mamba-inference.md).

Kernel-level functions are named after the kernels they check. Stateful ones
take the state and return (y, new_state) instead of updating in place.
Shapes in numpy order: L tokens, E (or C) channels, N state size, K taps.
"""
import numpy as np

from mambart import _core


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def silu(x):
    """x * sigmoid(x), with sigmoid(x) = exp(-log(1 + exp(-x))) (no overflow)."""
    x = _f64(x)
    return x * np.exp(-np.logaddexp(0.0, -x))


def softplus(x):
    """log1p(exp(x)) for x <= 20, x above (PyTorch's threshold, doc section 0)."""
    x = _f64(x)
    return np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0))))


def gate_silu(x, z):
    return _f64(x) * silu(z)


def gate_gelu(x, z):
    """x * gelu(z), gelu(v) = v / 2 (1 + erf(v / sqrt(2)))."""
    from scipy.special import erf

    z = _f64(z)
    return _f64(x) * 0.5 * z * (1.0 + erf(z / np.sqrt(2.0)))


# Rows of x up to which q4 multiplies in integers (kMatmulDecodeRows, cpp/kernels/matmul.h).
DECODE_ROWS = 32


def matmul(x, w, bias=None, wtype="f32", K=None, prefill=False, isa=None):
    """y (M, N) = x (M, K) @ w (N, K).T + bias (N): a PyTorch Linear.

    w as stored for `wtype` (see dequantize). q8 and q4 multiply in
    integers where kernels/matmul.h says so: with M <= DECODE_ROWS rows and
    not a prefill's, on every ISA; at any M on avx512 (isa: the one the
    kernel runs on, default the current). There q4 takes x as rounded to
    int8 per block (quantize_x_q8) for the codes' part, d * code, and the
    exact x for the minimum's, m; q8 takes x as rounded to int16 per block
    (quantize_x_q16). Otherwise the product is float64 over the
    dequantized weights.
    """
    integer = (len(x) <= DECODE_ROWS and not prefill) or (isa or _core.isa()) == "avx512"
    if wtype == "q4" and integer:
        d, codes, m = q4_parts(w, K)
        y = quantize_x_q8(x) @ (_f64(d) * codes).T + _f64(x) @ _f64(m).T
    elif wtype == "q8" and integer:
        y = quantize_x_q16(x) @ _f64(dequantize(w, wtype, K)).T
    else:
        y = _f64(x) @ _f64(dequantize(w, wtype, K)).T
    return y if bias is None else y + _f64(bias)


def quantize_x_q8(x, top=127):
    """x (M, K) as the q4 decode sees it (cpp/kernels/quantize.h, quantize_x_q8): per
    block of 32, amax = max|x|, q = rint(x * (127 / amax)), x ~ q * (amax / 127); float64.
    top=32767: quantize_x_q16, where a block with a NaN or an infinity becomes NaN."""
    x = np.asarray(x, np.float32)
    M, K = x.shape
    nb = -(-K // QBLOCK)
    blocks = np.zeros((M, nb * QBLOCK), np.float32)
    blocks[:, :K] = x
    blocks = blocks.reshape(M, nb, QBLOCK)
    top = np.float32(top)
    with np.errstate(divide="ignore", invalid="ignore"):
        amax = np.abs(blocks).max(-1, keepdims=True)
        inv = np.where(amax > 0, top / amax, np.float32(0)).astype(np.float32)
        q = np.rint(blocks * inv)  # float32 product, rounded half to even as the kernels do
    return (_f64(q) * _f64(amax / top)).reshape(M, -1)[:, :K]


def quantize_x_q16(x):
    """x (M, K) as the q8 decode sees it (quantize_x_q16)."""
    return quantize_x_q8(x, 32767)


# Weight formats, decoded from their description in cpp/kernels/quantize.h:
#   f16   IEEE binary16 per weight; bf16 the high 16 bits of an f32
#   q8    per row, blocks of 32: f32 d, then 32 int8 q; w = d * q
#   q4    per row, blocks of 32: f32 d, f32 m, then 16 bytes of 4-bit codes,
#         code i = low nibble of byte i // 2 for even i, high nibble for odd i;
#         w = d * code + m
# A row's last block is partial when K % 32 != 0 (its extra codes are unused).
QBLOCK = 32
_BLOCK_BYTES = {"q8": 4 + QBLOCK, "q4": 8 + QBLOCK // 2}


def row_bytes(wtype, K):
    if wtype in _BLOCK_BYTES:
        return -(-K // QBLOCK) * _BLOCK_BYTES[wtype]
    return K * {"f32": 4, "f16": 2, "bf16": 2}[wtype]


def _blocks(w, wtype, K):
    """(N, blocks, block bytes) view of a q8/q4 weight stored as uint8 (N, row_bytes)."""
    w = np.ascontiguousarray(w, dtype=np.uint8)
    return w.reshape(w.shape[0], -(-K // QBLOCK), _BLOCK_BYTES[wtype])


def block_params(w, wtype, K):
    """Per element (N, K) float32: the scale d of its block, and for q4 the minimum m."""
    b = _blocks(w, wtype, K)
    d = np.repeat(b[..., 0:4].copy().view(np.float32)[..., 0], QBLOCK, axis=1)[:, :K]
    m = np.repeat(b[..., 4:8].copy().view(np.float32)[..., 0], QBLOCK, axis=1)[:, :K] if wtype == "q4" else None
    return d, m


def dequantize(w, wtype, K):
    """A stored weight (f16/bf16: uint16 (N, K); q8/q4: uint8 (N, row_bytes)) as float32 (N, K)."""
    if wtype == "f32":
        return np.asarray(w, np.float32)
    if wtype == "f16":
        return np.asarray(w, np.uint16).view(np.float16).astype(np.float32)
    if wtype == "bf16":
        return (np.asarray(w, np.uint16).astype(np.uint32) << 16).view(np.float32)
    b = _blocks(w, wtype, K)
    N, nb = b.shape[:2]
    d, m = block_params(w, wtype, K)
    if wtype == "q8":
        q = b[..., 4:].copy().view(np.int8).reshape(N, nb * QBLOCK)[:, :K]
        return d * q.astype(np.float32)
    d, codes, m = q4_parts(w, K)
    return d * codes + m


def q4_parts(w, K):
    """A stored q4 weight's d, code and m per element, float32 (N, K): w = d * code + m."""
    b = _blocks(w, "q4", K)
    N, nb = b.shape[:2]
    d, m = block_params(w, "q4", K)
    q = b[..., 8:]
    codes = np.empty((N, nb, QBLOCK), np.uint8)
    codes[..., 0::2], codes[..., 1::2] = q & 15, q >> 4
    return d, codes.reshape(N, nb * QBLOCK)[:, :K].astype(np.float32), m


def rmsnorm(residual, weight, add=None, eps=1e-5):
    """Doc 4.1: r = residual (+ add); returns (r / sqrt(mean(r^2) + eps) * weight, r)."""
    r = _f64(residual) if add is None else _f64(residual) + _f64(add)
    y = r / np.sqrt(np.mean(r * r, axis=-1, keepdims=True) + eps) * _f64(weight)
    return y, r


def conv1d_prefill(x, w, bias, state):
    """Doc 2.1 steps 2-3 continuing from a conv state (2.2).

    x (L, C); w (C, K), w[:, K-1] multiplies the current token; state (C, K)
    holds the K previous inputs, oldest first. Returns (silu(conv + bias)
    (L, C), the last K inputs of state ++ x as (C, K)).
    """
    x, w, state = _f64(x), _f64(w), _f64(state)
    L, K = x.shape[0], w.shape[1]
    seq = np.concatenate([state.T, x], axis=0)  # (K + L, C); x_t at row K + t
    y = np.zeros_like(x)
    for t in range(L):
        y[t] = np.sum(w.T * seq[t + 1 : t + 1 + K], axis=0)
    if bias is not None:
        y += _f64(bias)
    return silu(y), seq[L:].T.copy()


def conv1d_step(x, w, bias, state):
    """One token per sequence: x (batch, C), state (batch, C, K)."""
    outs = [conv1d_prefill(x[b : b + 1], w, bias, state[b]) for b in range(len(x))]
    return np.concatenate([y for y, _ in outs]), np.stack([s for _, s in outs])


def scan_prefill(x, dt, dt_bias, A, B, C, D, z, state):
    """Doc 2.1 steps 5-9 from state h (E, N):

    delta_t = softplus(dt_t + dt_bias)
    h = exp(delta_t A) * h + (delta_t x_t) B_t      (E, N)
    y_t = h @ C_t + D x_t, then * silu(z_t) unless z is None
    x, dt, z (L, E); B, C (L, N); A (E, N); dt_bias, D (E).
    Returns (y (L, E), h).
    """
    x, dt, A, B, C, D = map(_f64, (x, dt, A, B, C, D))
    h = _f64(state).copy()
    delta = softplus(dt + _f64(dt_bias))
    y = np.zeros_like(x)
    for t in range(x.shape[0]):
        h = np.exp(delta[t][:, None] * A) * h + (delta[t] * x[t])[:, None] * B[t][None, :]
        y[t] = h @ C[t] + D * x[t]
    if z is not None:
        y *= silu(z)
    return y, h


def scan_step(x, dt, dt_bias, A, B, C, D, z, state):
    """One token per sequence: x, dt, z (batch, E); B, C (batch, N); state (batch, E, N)."""
    outs = []
    for b in range(len(x)):
        zb = None if z is None else z[b : b + 1]
        outs.append(scan_prefill(x[b : b + 1], dt[b : b + 1], dt_bias, A, B[b : b + 1],
                                 C[b : b + 1], D, zb, state[b]))
    return np.concatenate([y for y, _ in outs]), np.stack([h for _, h in outs])


def ssd_recurrent(x, dt, dt_bias, A, B, C, D, state, groups, dt_min=0.0, dt_max=np.inf):
    """Doc 3.1 steps 4-7, token by token (not the chunked form of 3.3), from state S (H, P, N):

    delta_t = clamp(softplus(dt_t + dt_bias), dt_min, dt_max)             (H)
    S[h] = exp(delta_t[h] A[h]) S[h] + delta_t[h] x_t[h] ⊗ B_t[g(h)]     (P, N)
    y_t[h] = S[h] @ C_t[g(h)] + D x_t[h]
    g(h) = h // (H / groups). x (L, H*P); dt (L, H); dt_bias, A (H);
    B, C (L, groups*N); D (H) or (H*P). Returns (y (L, H*P), S).
    """
    x, dt, A, B, C, D = map(_f64, (x, dt, A, B, C, D))
    S = _f64(state).copy()
    H, P, N = S.shape
    L = x.shape[0]
    g = np.arange(H) // (H // groups)
    x = x.reshape(L, H, P)
    B, C = B.reshape(L, groups, N)[:, g], C.reshape(L, groups, N)[:, g]  # (L, H, N)
    D = D.reshape(H, P) if D.size == H * P else D.reshape(H, 1)
    delta = np.clip(softplus(dt + _f64(dt_bias)), dt_min, dt_max)  # (L, H)
    y = np.zeros_like(x)
    for t in range(L):
        S = np.exp(delta[t] * A)[:, None, None] * S + (delta[t][:, None] * x[t])[:, :, None] * B[t][:, None, :]
        y[t] = np.einsum("hpn,hn->hp", S, C[t]) + D * x[t]
    return y.reshape(L, H * P), S


def ssd_step(x, dt, dt_bias, A, B, C, D, state, groups):
    """Doc 3.2, one token per sequence, delta not clamped: x (batch, H*P); dt (batch, H);
    B, C (batch, groups*N); state (batch, H, P, N)."""
    outs = [ssd_recurrent(x[b : b + 1], dt[b : b + 1], dt_bias, A, B[b : b + 1], C[b : b + 1], D,
                          state[b], groups) for b in range(len(x))]
    return np.concatenate([y for y, _ in outs]), np.stack([s for _, s in outs])


def rmsnorm_gated(x, z, weight, group, eps=1e-5, norm_before_gate=False):
    """Doc 3.1 step 8 (norm_before_gate false): v = x * silu(z); each run of `group`
    channels divided by sqrt(mean(v^2) + eps); times weight. x, z (rows, dim).
    norm_before_gate (Falcon-H1): v = x, and the normed v times silu(z)."""
    v = _f64(x) if norm_before_gate else _f64(x) * silu(z)
    rows, dim = v.shape
    v = v.reshape(rows, dim // group, group)
    v = v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + eps)
    v = v.reshape(rows, dim) * _f64(weight)
    return v * silu(z) if norm_before_gate else v


# --- attention-layer kernels ---------------------------------------------------------


def attention(q, ks, vs, lens, n_heads, n_kv_heads, scale):
    """Row r of q (rows, Hq*d) attends the first lens[r] keys of ks[r], vs[r] (S, Hkv, d);
    query head h reads kv head h // (Hq // Hkv). Plain softmax over the full score row."""
    q = _f64(q)
    rows, d = q.shape[0], q.shape[1] // n_heads
    out = np.zeros((rows, n_heads, d))
    for r in range(rows):
        k, v = _f64(ks[r])[:lens[r]], _f64(vs[r])[:lens[r]]
        for h in range(n_heads):
            g = h // (n_heads // n_kv_heads)
            s = scale * (k[:, g] @ q[r, h * d:(h + 1) * d])
            w = np.exp(s - s.max())
            out[r, h] = (w / w.sum()) @ v[:, g]
    return out.reshape(rows, n_heads * d)


def rope(x, pos, inv_freq, n_heads, scale=1.0):
    """rotate_half rotary embedding of the first 2 * len(inv_freq) dims of every head, cos and sin
    times `scale`. The angle pos * inv_freq is rounded to float32, as transformers forms it; the
    rest is float64."""
    x = _f64(x).copy()
    rows, d = x.shape[0], x.shape[1] // n_heads
    half = len(inv_freq)
    angle = (np.asarray(pos, np.float32)[:, None] * np.asarray(inv_freq, np.float32)[None, :]).astype(np.float64)
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    for h in range(n_heads):
        a = x[:, h * d:h * d + half].copy()
        b = x[:, h * d + half:h * d + 2 * half].copy()
        x[:, h * d:h * d + half] = a * c - b * s
        x[:, h * d + half:h * d + 2 * half] = b * c + a * s
    return x


def relu_sq(x):
    return np.maximum(_f64(x), 0.0) ** 2


def route(logits, top_k, sigmoid, normalize, scale=1.0, bias=None, n_group=1, topk_group=1):
    """MoE routing (cpp/kernels/moe.h) in float64: (index, weight) per row; ties to the lower index."""
    logits = _f64(logits)
    rows, E = logits.shape
    per = E // n_group
    index, weight = np.zeros((rows, top_k), np.int64), np.zeros((rows, top_k))
    for r in range(rows):
        x = logits[r]
        score = 1.0 / (1.0 + np.exp(-x)) if sigmoid else np.exp(x - x.max()) / np.exp(x - x.max()).sum()
        choice = score + (0.0 if bias is None else _f64(bias))
        if topk_group < n_group:
            value = [sum(sorted(choice[g * per:(g + 1) * per], reverse=True)[:2]) for g in range(n_group)]
            keep = sorted(range(n_group), key=lambda g: (-value[g], g))[:topk_group]
            choice = np.where(np.isin(np.arange(E) // per, keep), choice, -np.inf)
        chosen = sorted(range(E), key=lambda e: (-choice[e], e))[:top_k]
        w = score[chosen]
        if normalize:
            w = w / (w.sum() + 1e-20)
        index[r], weight[r] = chosen, w * scale
    return index, weight
