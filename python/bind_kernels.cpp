// _core.kernels: each entry of the active CPU kernel table over numpy
// float32 arrays, run single-threaded over the full range (for tests and
// experiments; the model calls the table directly). Plus the ISA hooks
// _core.isa(), _core.available_isas(), _core.set_isa(name).
//
// Arrays are taken as they are, never copied or cast: 2-D token-row inputs
// and outputs may be row-strided views (unit inner stride), e.g. B and C as
// column slices of one (L, R+2N) x_proj output; weights, states and
// elementwise arrays must be C-contiguous. States are updated in place.
// Outputs are new arrays unless `out` is given.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <limits>
#include <string>
#include <vector>

#include "bindings.h"
#include "check.h"
#include "cpu/isa.h"
#include "kernels/quantize.h"

namespace {

using namespace mambart;
using Shape = std::vector<int64_t>;

std::string str(const Shape& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

// A float32 array as a kernel sees it: data, shape, row stride in elements.
struct View {
  float* data;
  Shape shape;
  int64_t ld;
};

enum Layout { kContiguous, kRowStrided };

View view(const char* op, const char* name, const py::array& a, const Shape& expected,
          Layout layout, bool writable = false) {
  Shape shape(a.shape(), a.shape() + a.ndim());
  MAMBART_CHECK(a.dtype().is(py::dtype::of<float>()), "[", op, "] ", name,
                " must be float32, got ", std::string(py::str(a.dtype())));
  MAMBART_CHECK(shape == expected, "[", op, "] ", name, " has shape ", str(shape), ", expected ",
                str(expected));
  MAMBART_CHECK(!writable || a.writeable(), "[", op, "] ", name, " must be writeable");
  const int64_t cols = shape.empty() ? 1 : shape.back();
  int64_t ld = cols;
  if (layout == kContiguous) {
    MAMBART_CHECK(a.flags() & py::array::c_style, "[", op, "] ", name,
                  " must be C-contiguous, got strides ", str(Shape(a.strides(), a.strides() + a.ndim())));
  } else if (a.size() > 0) {  // (empty arrays may carry zero strides)
    // (rows, cols) with unit inner stride; the row stride is free (>= 0).
    const int64_t s0 = a.strides(0), s1 = a.strides(1);
    MAMBART_CHECK((cols <= 1 || s1 == 4) && s0 >= 0 && s0 % 4 == 0, "[", op, "] ", name,
                  " needs unit inner stride and a non-negative row stride, got strides (", s0,
                  ", ", s1, ") bytes");
    if (shape[0] > 1) ld = s0 / 4;
  }
  return {static_cast<float*>(const_cast<void*>(a.data())), shape, ld};
}

// Optional input: nullptr when None.
const float* optional(const char* op, const char* name, const py::object& o, const Shape& expected,
                      Layout layout, int64_t* ld = nullptr) {
  if (o.is_none()) return nullptr;
  View v = view(op, name, o.cast<py::array>(), expected, layout);
  if (ld) *ld = v.ld;
  return v.data;
}

// The output: `out` if given (checked), else a new C-contiguous array.
py::array output(const char* op, const py::object& out, const Shape& shape, Layout layout,
                 int64_t* ld) {
  py::array a = out.is_none() ? py::array_t<float>(shape) : out.cast<py::array>();
  View v = view(op, "out", a, shape, layout, true);
  *ld = v.ld;
  return a;
}

float* ptr(py::array& a) { return static_cast<float*>(a.mutable_data()); }

template <typename Params, typename Fn>
void run(Fn fn, const Params& p, int64_t end) {
  py::gil_scoped_release nogil;
  fn(p, 0, end);
}

// A weight type by name: "f32", "f16", "bf16", "q8", "q4" or "f32p".
DType weight_type(const char* op, const std::string& name) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8, DType::Q4, DType::F32P})
    if (name == dtype_name(t)) return t;
  MAMBART_CHECK(false, "[", op, "] unknown weight type '", name, "' (f32, f16, bf16, q8, q4, f32p)");
  return DType::F32;
}

// A weight (N, K) of `type` as stored: float32 (N, K), uint16 (N, K) for
// f16/bf16, uint8 (N, row_bytes) for q8/q4, float32 (N rounded up to 16, K)
// for f32p; C-contiguous. Returns its data.
const void* weight(const char* op, const py::array& w, DType type, int64_t N, int64_t K) {
  const bool block = type == DType::Q8 || type == DType::Q4;
  const bool half = type == DType::F16 || type == DType::BF16;
  const py::dtype want = block ? py::dtype::of<uint8_t>() : half ? py::dtype::of<uint16_t>() : py::dtype::of<float>();
  const Shape expected = {stored_rows(type, N), block ? row_bytes(type, K) : K};
  Shape shape(w.shape(), w.shape() + w.ndim());
  MAMBART_CHECK(w.dtype().is(want), "[", op, "] w of type ", dtype_name(type), " must be ",
                std::string(py::str(want)), ", got ", std::string(py::str(w.dtype())));
  MAMBART_CHECK(shape == expected, "[", op, "] w has shape ", str(shape), ", expected ", str(expected),
                block ? " (rows of row_bytes(K) bytes)" : "");
  MAMBART_CHECK(w.flags() & py::array::c_style, "[", op, "] w must be C-contiguous, got strides ",
                str(Shape(w.strides(), w.strides() + w.ndim())));
  return w.data();
}

// K of a weight (N, ...) of `type`: given, or its second dimension (dense
// types only; a block type's row length in bytes does not tell K).
int64_t weight_k(const char* op, const py::array& w, DType type, const py::object& K) {
  if (!K.is_none()) {
    const int64_t k = K.cast<int64_t>();
    MAMBART_CHECK(k >= 0, "[", op, "] K must be non-negative, got ", k);
    return k;
  }
  MAMBART_CHECK(type != DType::Q8 && type != DType::Q4, "[", op, "] K must be given for weight type ",
                dtype_name(type));
  MAMBART_CHECK(w.ndim() == 2, "[", op, "] w must be 2-D, got shape ", str(Shape(w.shape(), w.shape() + w.ndim())));
  return w.shape(1);
}

// N of a weight of `type` stored with `rows` rows: given (f32p only, whose
// last panel may hold fewer), or `rows`.
int64_t weight_n(const char* op, int64_t rows, DType type, const py::object& N) {
  if (N.is_none()) return rows;
  MAMBART_CHECK(type == DType::F32P, "[", op, "] N is given only for f32p, whose stored rows are N rounded up to ",
                kPanelRows);
  const int64_t n = N.cast<int64_t>();
  MAMBART_CHECK(n >= 0 && stored_rows(type, n) == rows, "[", op, "] N = ", n, " does not fit ", rows,
                " stored rows of f32p");
  return n;
}

py::array matmul(const py::array& x, const py::array& w, const py::object& bias,
                 const py::object& out, const std::string& wtype, const py::object& K_arg, const py::object& N_arg,
                 bool prefill) {
  const char* op = "matmul";
  MAMBART_CHECK(x.ndim() == 2 && w.ndim() == 2, "[matmul] x and w must be 2-D, got shapes ",
                str(Shape(x.shape(), x.shape() + x.ndim())), " and ",
                str(Shape(w.shape(), w.shape() + w.ndim())));
  const DType type = weight_type(op, wtype);
  const int64_t M = x.shape(0), N = weight_n(op, w.shape(0), type, N_arg);
  const int64_t K = K_arg.is_none() && type != DType::Q8 && type != DType::Q4 ? x.shape(1)
                                                                               : weight_k(op, w, type, K_arg);
  MatmulParams p{};
  View vx = view(op, "x", x, {M, K}, kRowStrided);
  p.x = vx.data, p.ldx = vx.ld, p.w = weight(op, w, type, N, K), p.wtype = type;
  p.bias = optional(op, "bias", bias, {N}, kContiguous);
  py::array y = output(op, out, {M, N}, kRowStrided, &p.ldy);
  p.y = ptr(y), p.M = M, p.N = N, p.K = K, p.prefill = prefill;
  run(cpu_kernels().matmul[static_cast<int>(type)], p, N);
  return y;
}

// w (N, K) float32 -> the stored form of `wtype` (see weight()).
py::array convert(const py::array& w, const std::string& wtype) {
  const char* op = "convert";
  const DType type = weight_type(op, wtype);
  MAMBART_CHECK(w.ndim() == 2, "[convert] w must be 2-D (N, K), got shape ",
                str(Shape(w.shape(), w.shape() + w.ndim())));
  const int64_t N = w.shape(0), K = w.shape(1);
  const float* src = view(op, "w", w, {N, K}, kContiguous).data;
  const bool block = type == DType::Q8 || type == DType::Q4;
  const bool f32 = type == DType::F32 || type == DType::F32P;
  py::array dst = block ? py::array(py::array_t<uint8_t>({N, row_bytes(type, K)}))
                  : f32 ? py::array(py::array_t<float>({stored_rows(type, N), K}))
                        : py::array(py::array_t<uint16_t>({N, K}));
  void* out = dst.mutable_data();
  {
    py::gil_scoped_release nogil;
    if (type == DType::F32P)
      pack_panels(src, N, K, static_cast<float*>(out), 0, stored_rows(type, N) / kPanelRows);
    else
      convert_rows(src, N, K, type, out);
  }
  return dst;
}

// The stored form of `wtype` (N, ...) back to float32 (N, K).
py::array dequantize(const py::array& w, const std::string& wtype, const py::object& K_arg, const py::object& N_arg) {
  const char* op = "dequantize";
  const DType type = weight_type(op, wtype);
  MAMBART_CHECK(w.ndim() == 2, "[dequantize] w must be 2-D, got shape ",
                str(Shape(w.shape(), w.shape() + w.ndim())));
  const int64_t N = weight_n(op, w.shape(0), type, N_arg), K = weight_k(op, w, type, K_arg);
  const char* src = static_cast<const char*>(weight(op, w, type, N, K));
  py::array_t<float> dst({N, K});
  float* out = dst.mutable_data();
  {
    py::gil_scoped_release nogil;
    const int64_t stride = row_bytes(type, K);
    for (int64_t n = 0; n < N; ++n) {
      if (type == DType::F32P)
        panel_row(reinterpret_cast<const float*>(src), K, n, out + n * K);
      else
        dequantize_row(src + n * stride, type, K, out + n * K);
    }
  }
  return dst;
}

py::array rmsnorm(const py::array& residual, const py::array& weight, const py::object& add,
                  float eps, const py::object& out) {
  const char* op = "rmsnorm";
  MAMBART_CHECK(residual.ndim() == 2, "[rmsnorm] residual must be 2-D (rows, dim), got shape ",
                str(Shape(residual.shape(), residual.shape() + residual.ndim())));
  const int64_t rows = residual.shape(0), dim = residual.shape(1);
  RmsnormParams p{};
  p.residual = view(op, "residual", residual, {rows, dim}, kContiguous, true).data;
  p.weight = view(op, "weight", weight, {dim}, kContiguous).data;
  p.add = optional(op, "add", add, {rows, dim}, kContiguous);
  int64_t ld;
  py::array y = output(op, out, {rows, dim}, kContiguous, &ld);
  p.out = ptr(y), p.rows = rows, p.dim = dim, p.eps = eps;
  run(cpu_kernels().rmsnorm, p, rows);
  return y;
}

// conv1d_prefill: x (L, C), state (C, K).  conv1d_step: x (batch, C), state (batch, C, K).
py::array conv1d(bool step, const py::array& x, const py::array& w, const py::object& bias,
                 const py::array& state, const py::object& out) {
  const char* op = step ? "conv1d_step" : "conv1d_prefill";
  MAMBART_CHECK(x.ndim() == 2 && w.ndim() == 2, "[", op, "] x and w must be 2-D, got shapes ",
                str(Shape(x.shape(), x.shape() + x.ndim())), " and ",
                str(Shape(w.shape(), w.shape() + w.ndim())));
  const int64_t rows = x.shape(0), C = x.shape(1), K = w.shape(1);
  MAMBART_CHECK(K >= 1, "[", op, "] w has shape ", str(Shape{w.shape(0), K}), ", needs at least one tap");
  Conv1dParams p{};
  View vx = view(op, "x", x, {rows, C}, kRowStrided);
  p.x = vx.data, p.ldx = vx.ld;
  p.w = view(op, "w", w, {C, K}, kContiguous).data;
  p.bias = optional(op, "bias", bias, {C}, kContiguous);
  const Shape state_shape = step ? Shape{rows, C, K} : Shape{C, K};
  p.state = view(op, "state", state, state_shape, kContiguous, true).data;
  py::array y = output(op, out, {rows, C}, kRowStrided, &p.ldy);
  p.y = ptr(y), p.C = C, p.K = K;
  p.batch = step ? rows : 1;
  p.seqlen = step ? 1 : rows;
  run(step ? cpu_kernels().conv1d_step : cpu_kernels().conv1d_prefill, p, C);
  return y;
}

// scan_prefill: token rows are L time steps, state (E, N).
// scan_step: token rows are the batch, state (batch, E, N).
py::array scan(bool step, const py::array& x, const py::array& dt, const py::array& dt_bias,
               const py::array& A, const py::array& B, const py::array& C, const py::array& D,
               const py::object& z, const py::array& state, const py::object& out) {
  const char* op = step ? "scan_step" : "scan_prefill";
  MAMBART_CHECK(x.ndim() == 2 && A.ndim() == 2, "[", op, "] x and A must be 2-D, got shapes ",
                str(Shape(x.shape(), x.shape() + x.ndim())), " and ",
                str(Shape(A.shape(), A.shape() + A.ndim())));
  const int64_t rows = x.shape(0), E = x.shape(1), N = A.shape(1);
  ScanParams p{};
  View vx = view(op, "x", x, {rows, E}, kRowStrided);
  View vdt = view(op, "dt", dt, {rows, E}, kRowStrided);
  View vb = view(op, "B", B, {rows, N}, kRowStrided);
  View vc = view(op, "C", C, {rows, N}, kRowStrided);
  p.x = vx.data, p.ldx = vx.ld, p.dt = vdt.data, p.lddt = vdt.ld;
  p.B = vb.data, p.ldb = vb.ld, p.C = vc.data, p.ldc = vc.ld;
  p.dt_bias = view(op, "dt_bias", dt_bias, {E}, kContiguous).data;
  p.A = view(op, "A", A, {E, N}, kContiguous).data;
  p.D = view(op, "D", D, {E}, kContiguous).data;
  p.z = optional(op, "z", z, {rows, E}, kRowStrided, &p.ldz);
  const Shape state_shape = step ? Shape{rows, E, N} : Shape{E, N};
  p.state = view(op, "state", state, state_shape, kContiguous, true).data;
  py::array y = output(op, out, {rows, E}, kRowStrided, &p.ldy);
  p.y = ptr(y), p.E = E, p.N = N;
  p.batch = step ? rows : 1;
  p.seqlen = step ? 1 : rows;
  run(step ? cpu_kernels().scan_step : cpu_kernels().scan_prefill, p, E);
  return y;
}

// ssd_prefill: token rows are L time steps, state (H, P, N).
// ssd_step: token rows are the batch, state (batch, H, P, N).
// H, P, N come from the state, G from `groups`; D is (H) or (H*P).
py::array ssd(bool step, const py::array& x, const py::array& dt, const py::array& dt_bias,
              const py::array& A, const py::array& B, const py::array& C, const py::array& D,
              const py::array& state, int64_t groups, int64_t chunk, float dt_min, float dt_max,
              const py::object& out) {
  const char* op = step ? "ssd_step" : "ssd_prefill";
  const int64_t sdim = step ? 4 : 3;
  MAMBART_CHECK(x.ndim() == 2 && state.ndim() == sdim, "[", op, "] x must be 2-D and state ", sdim,
                "-D, got shapes ", str(Shape(x.shape(), x.shape() + x.ndim())), " and ",
                str(Shape(state.shape(), state.shape() + state.ndim())));
  const int64_t rows = x.shape(0), H = state.shape(sdim - 3), P = state.shape(sdim - 2),
                N = state.shape(sdim - 1);
  MAMBART_CHECK(groups >= 1 && H % groups == 0, "[", op, "] groups must divide the ", H,
                " heads, got ", groups);
  MAMBART_CHECK(chunk >= 1, "[", op, "] chunk must be at least 1, got ", chunk);
  const int64_t G = groups;
  SsdParams p{};
  View vx = view(op, "x", x, {rows, H * P}, kRowStrided);
  View vdt = view(op, "dt", dt, {rows, H}, kRowStrided);
  View vb = view(op, "B", B, {rows, G * N}, kRowStrided);
  View vc = view(op, "C", C, {rows, G * N}, kRowStrided);
  p.x = vx.data, p.ldx = vx.ld, p.dt = vdt.data, p.lddt = vdt.ld;
  p.B = vb.data, p.ldb = vb.ld, p.C = vc.data, p.ldc = vc.ld;
  p.dt_bias = view(op, "dt_bias", dt_bias, {H}, kContiguous).data;
  p.A = view(op, "A", A, {H}, kContiguous).data;
  p.d_per_channel = D.ndim() == 1 && D.shape(0) == H * P && P != 1;
  p.D = view(op, "D", D, {p.d_per_channel ? H * P : H}, kContiguous).data;
  const Shape state_shape = step ? Shape{rows, H, P, N} : Shape{H, P, N};
  p.state = view(op, "state", state, state_shape, kContiguous, true).data;
  py::array y = output(op, out, {rows, H * P}, kRowStrided, &p.ldy);
  p.y = ptr(y), p.H = H, p.P = P, p.G = G, p.N = N, p.chunk = chunk;
  p.dt_min = dt_min, p.dt_max = dt_max;
  p.batch = step ? rows : 1;
  p.seqlen = step ? 1 : rows;
  run(step ? cpu_kernels().ssd_step : cpu_kernels().ssd_prefill, p, H);
  return y;
}

// rmsnorm_gated: x, z, out (rows, dim) row-strided; weight (dim); dim a multiple of group.
py::array rmsnorm_gated(const py::array& x, const py::array& z, const py::array& weight,
                        int64_t group, float eps, const py::object& out, bool norm_before_gate) {
  const char* op = "rmsnorm_gated";
  MAMBART_CHECK(x.ndim() == 2, "[rmsnorm_gated] x must be 2-D (rows, dim), got shape ",
                str(Shape(x.shape(), x.shape() + x.ndim())));
  const int64_t rows = x.shape(0), dim = x.shape(1);
  MAMBART_CHECK(group >= 1 && dim % group == 0, "[rmsnorm_gated] group must divide dim ", dim,
                ", got ", group);
  RmsnormGatedParams p{};
  View vx = view(op, "x", x, {rows, dim}, kRowStrided);
  View vz = view(op, "z", z, {rows, dim}, kRowStrided);
  p.x = vx.data, p.ldx = vx.ld, p.z = vz.data, p.ldz = vz.ld;
  p.weight = view(op, "weight", weight, {dim}, kContiguous).data;
  py::array y = output(op, out, {rows, dim}, kRowStrided, &p.ldout);
  p.out = ptr(y), p.rows = rows, p.dim = dim, p.group = group, p.eps = eps, p.norm_before_gate = norm_before_gate;
  run(cpu_kernels().rmsnorm_gated, p, rows);
  return y;
}

// silu / softplus (z unused) and gate_silu: any shape, C-contiguous.
using ElementwiseFn = void (*)(const ElementwiseParams&, int64_t, int64_t);
py::array elementwise(const char* op, ElementwiseFn fn, const py::array& x, const py::object& z,
                      const py::object& out) {
  const Shape shape(x.shape(), x.shape() + x.ndim());
  ElementwiseParams p{};
  p.x = view(op, "x", x, shape, kContiguous).data;
  p.z = optional(op, "z", z, shape, kContiguous);
  int64_t ld;
  py::array y = output(op, out, shape, kContiguous, &ld);
  p.y = ptr(y), p.n = static_cast<int64_t>(x.size());
  run(fn, p, p.n);
  return y;
}

// attention: q (rows, Hq*d) row-strided; ks[r], vs[r] (S_r, Hkv, d) C-contiguous,
// row r seeing lens[r] <= S_r keys.
py::array attention(const py::array& q, const std::vector<py::array>& ks, const std::vector<py::array>& vs,
                    const std::vector<int64_t>& lens, int64_t n_heads, int64_t n_kv_heads, float scale,
                    const py::object& out) {
  const char* op = "attention";
  MAMBART_CHECK(q.ndim() == 2, "[attention] q must be 2-D (rows, n_heads * head_dim)");
  MAMBART_CHECK(n_heads >= 1 && n_kv_heads >= 1 && n_heads % n_kv_heads == 0, "[attention] n_kv_heads ",
                n_kv_heads, " must divide n_heads ", n_heads);
  const int64_t rows = q.shape(0), d = q.shape(1) / n_heads;
  MAMBART_CHECK(d >= 1 && d * n_heads == q.shape(1), "[attention] q has ", q.shape(1),
                " columns, not a multiple of n_heads ", n_heads);
  MAMBART_CHECK(static_cast<int64_t>(ks.size()) == rows && static_cast<int64_t>(vs.size()) == rows &&
                    static_cast<int64_t>(lens.size()) == rows,
                "[attention] ks, vs and lens need one entry per row (", rows, ")");
  std::vector<const float*> kp, vp;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t S = ks[r].ndim() == 3 ? ks[r].shape(0) : -1;
    kp.push_back(view(op, "ks[r]", ks[r], {S, n_kv_heads, d}, kContiguous).data);
    vp.push_back(view(op, "vs[r]", vs[r], {S, n_kv_heads, d}, kContiguous).data);
    MAMBART_CHECK(lens[r] >= 1 && lens[r] <= S, "[attention] lens[", r, "] = ", lens[r], " is outside [1, ", S, "]");
  }
  AttentionParams p{};
  View qv = view(op, "q", q, {rows, n_heads * d}, kRowStrided);
  p.q = qv.data, p.ldq = qv.ld;
  py::array y = output(op, out, {rows, n_heads * d}, kRowStrided, &p.ldo);
  p.out = ptr(y), p.k = kp.data(), p.v = vp.data(), p.len = lens.data();
  p.rows = rows, p.n_heads = n_heads, p.n_kv_heads = n_kv_heads, p.head_dim = d, p.scale = scale;
  run(cpu_kernels().attention, p, rows * n_heads);
  return y;
}

// rope: x (rows, H*d) row-strided, turned in place; pos (rows); inv_freq (rot / 2).
void rope(py::array& x, const std::vector<int64_t>& pos, const py::array& inv_freq, int64_t n_heads, float scale) {
  const char* op = "rope";
  MAMBART_CHECK(x.ndim() == 2 && n_heads >= 1 && x.shape(1) % n_heads == 0, "[rope] x must be (rows, n_heads * d)");
  MAMBART_CHECK(inv_freq.ndim() == 1, "[rope] inv_freq must be 1-D");
  const int64_t rows = x.shape(0), d = x.shape(1) / n_heads, half = inv_freq.shape(0);
  MAMBART_CHECK(static_cast<int64_t>(pos.size()) == rows, "[rope] pos needs one entry per row (", rows, ")");
  MAMBART_CHECK(half >= 1 && 2 * half <= d, "[rope] inv_freq has ", half, " values; 2 * that must be in [2, ", d, "]");
  RopeParams p{};
  View xv = view(op, "x", x, {rows, n_heads * d}, kRowStrided, true);
  p.x = xv.data, p.ldx = xv.ld, p.pos = pos.data();
  p.inv_freq = view(op, "inv_freq", inv_freq, {half}, kContiguous).data;
  p.rows = rows, p.n_heads = n_heads, p.head_dim = d, p.rot = 2 * half, p.scale = scale;
  run(cpu_kernels().rope, p, rows);
}

// route: logits (rows, E) row-strided; bias (E) or None. Returns (index int32, weight) (rows, top_k).
py::tuple route(const py::array& logits, int64_t top_k, bool sigmoid, bool normalize, float scale,
                const py::object& bias, int64_t n_group, int64_t topk_group) {
  const char* op = "route";
  MAMBART_CHECK(logits.ndim() == 2, "[route] logits must be 2-D (rows, n_experts)");
  const int64_t rows = logits.shape(0), E = logits.shape(1);
  MAMBART_CHECK(top_k >= 1 && top_k <= E, "[route] top_k ", top_k, " is outside [1, ", E, "]");
  MAMBART_CHECK(n_group >= 1 && E % n_group == 0, "[route] n_group ", n_group, " must divide n_experts ", E);
  MAMBART_CHECK(topk_group >= 1 && topk_group <= n_group && topk_group * (E / n_group) >= top_k, "[route] topk_group ",
                topk_group, " must be in [1, n_group ", n_group, "] and leave top_k ", top_k, " experts eligible");
  RouterParams p{};
  View lv = view(op, "logits", logits, {rows, E}, kRowStrided);
  p.logits = lv.data, p.ld = lv.ld;
  p.bias = optional(op, "bias", bias, {E}, kContiguous);
  py::array_t<int32_t> index({rows, top_k});
  py::array_t<float> weight({rows, top_k});
  p.index = index.mutable_data(), p.weight = weight.mutable_data();
  p.rows = rows, p.n_experts = E, p.top_k = top_k, p.n_group = n_group, p.topk_group = topk_group;
  p.sigmoid = sigmoid, p.normalize = normalize, p.scale = scale;
  run(cpu_kernels().route, p, rows);
  return py::make_tuple(index, weight);
}

}  // namespace

void bind_kernels(py::module_& m) {
  m.def("isa", [] { return std::string(cpu_kernels().isa); },
        "Name of the active CPU kernel table ('scalar', 'avx2').");
  m.def("available_isas", &available_isas, "ISAs this machine can run, best last.");
  m.def("set_isa", &set_isa, py::arg("name"),
        "Use the named CPU kernel table from now on (a test hook; do not call while a model runs).");

  auto k = m.def_submodule("kernels", "The active CPU kernel table over float32 numpy arrays.");
  const auto none = py::none();
  k.def("matmul", &matmul, py::arg("x"), py::arg("w"), py::arg("bias") = none,
        py::arg("out") = none, py::arg("wtype") = "f32", py::arg("K") = none, py::arg("N") = none,
        py::arg("prefill") = false,
        "y (M, N) = x (M, K) @ w (N, K).T + bias (N). w as stored for wtype: float32 (N, K) for "
        "f32, uint16 (N, K) for f16/bf16, uint8 (N, row_bytes) for q8/q4 (K must be given), "
        "float32 (N rounded up to 16, K) for f32p (N given unless a multiple of 16). prefill: "
        "the rows are a prefill's (the GEMM at any M).");
  k.def("convert", &convert, py::arg("w"), py::arg("wtype"),
        "w float32 (N, K) in the stored form of wtype (as matmul takes it), via convert_rows "
        "(f32p: pack_panels).");
  k.def("dequantize", &dequantize, py::arg("w"), py::arg("wtype"), py::arg("K") = none, py::arg("N") = none,
        "A stored weight of wtype back to float32 (N, K), via dequantize_row (f32p: panel_row); K "
        "is required for q8/q4, N for f32p unless a multiple of 16.");
  k.def("rmsnorm", &rmsnorm, py::arg("residual"), py::arg("weight"), py::arg("add") = none,
        py::arg("eps") = 1e-5f, py::arg("out") = none,
        "residual (rows, dim) += add (in place); returns residual / rms(residual) * weight.");
  k.def(
      "conv1d_prefill",
      [](const py::array& x, const py::array& w, const py::object& bias, const py::array& state,
         const py::object& out) { return conv1d(false, x, w, bias, state, out); },
      py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("state"), py::arg("out") = none,
      "silu(causal conv of x (L, C) with w (C, K) + bias), continuing from state (C, K), "
      "which is updated in place.");
  k.def(
      "conv1d_step",
      [](const py::array& x, const py::array& w, const py::object& bias, const py::array& state,
         const py::object& out) { return conv1d(true, x, w, bias, state, out); },
      py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("state"), py::arg("out") = none,
      "One token per row: x (batch, C), state (batch, C, K) updated in place.");
  k.def(
      "scan_prefill",
      [](const py::array& x, const py::array& dt, const py::array& dt_bias, const py::array& A,
         const py::array& B, const py::array& C, const py::array& D, const py::object& z,
         const py::array& state, const py::object& out) {
        return scan(false, x, dt, dt_bias, A, B, C, D, z, state, out);
      },
      py::arg("x"), py::arg("dt"), py::arg("dt_bias"), py::arg("A"), py::arg("B"), py::arg("C"),
      py::arg("D"), py::arg("z"), py::arg("state"), py::arg("out") = none,
      "Selective scan over L tokens: x, dt, z (L, E); B, C (L, N); A (E, N); dt_bias, D (E); "
      "state (E, N) updated in place; z may be None.");
  k.def(
      "scan_step",
      [](const py::array& x, const py::array& dt, const py::array& dt_bias, const py::array& A,
         const py::array& B, const py::array& C, const py::array& D, const py::object& z,
         const py::array& state, const py::object& out) {
        return scan(true, x, dt, dt_bias, A, B, C, D, z, state, out);
      },
      py::arg("x"), py::arg("dt"), py::arg("dt_bias"), py::arg("A"), py::arg("B"), py::arg("C"),
      py::arg("D"), py::arg("z"), py::arg("state"), py::arg("out") = none,
      "One token per row: x, dt, z (batch, E); B, C (batch, N); state (batch, E, N).");
  k.def("rmsnorm_gated", &rmsnorm_gated, py::arg("x"), py::arg("z"), py::arg("weight"),
        py::arg("group"), py::arg("eps") = 1e-5f, py::arg("out") = none, py::arg("norm_before_gate") = false,
        "v = x * silu(z), x and z (rows, dim); each run of `group` channels of v divided by its "
        "rms, times weight (dim). norm_before_gate: v = x, and the result times silu(z).");
  const float inf = std::numeric_limits<float>::infinity();
  k.def(
      "ssd_prefill",
      [](const py::array& x, const py::array& dt, const py::array& dt_bias, const py::array& A,
         const py::array& B, const py::array& C, const py::array& D, const py::array& state,
         int64_t groups, int64_t chunk, float dt_min, float dt_max, const py::object& out) {
        return ssd(false, x, dt, dt_bias, A, B, C, D, state, groups, chunk, dt_min, dt_max, out);
      },
      py::arg("x"), py::arg("dt"), py::arg("dt_bias"), py::arg("A"), py::arg("B"), py::arg("C"),
      py::arg("D"), py::arg("state"), py::arg("groups"), py::arg("chunk"), py::arg("dt_min") = 0.0f,
      py::arg("dt_max") = inf, py::arg("out") = none,
      "Mamba-2 SSD over L tokens in chunks of `chunk`: x (L, H*P); dt (L, H); dt_bias, A (H); "
      "B, C (L, groups*N); D (H) or (H*P); state (H, P, N) updated in place. "
      "delta = clamp(softplus(dt + dt_bias), dt_min, dt_max).");
  k.def(
      "ssd_step",
      [](const py::array& x, const py::array& dt, const py::array& dt_bias, const py::array& A,
         const py::array& B, const py::array& C, const py::array& D, const py::array& state,
         int64_t groups, const py::object& out) {
        return ssd(true, x, dt, dt_bias, A, B, C, D, state, groups, 1, 0.0f, 0.0f, out);
      },
      py::arg("x"), py::arg("dt"), py::arg("dt_bias"), py::arg("A"), py::arg("B"), py::arg("C"),
      py::arg("D"), py::arg("state"), py::arg("groups"), py::arg("out") = none,
      "One token per row: x (batch, H*P); dt (batch, H); B, C (batch, groups*N); "
      "state (batch, H, P, N). delta = softplus(dt + dt_bias), not clamped.");
  k.def(
      "silu",
      [](const py::array& x, const py::object& out) {
        return elementwise("silu", cpu_kernels().silu, x, py::none(), out);
      },
      py::arg("x"), py::arg("out") = none, "x * sigmoid(x).");
  k.def(
      "softplus",
      [](const py::array& x, const py::object& out) {
        return elementwise("softplus", cpu_kernels().softplus, x, py::none(), out);
      },
      py::arg("x"), py::arg("out") = none, "x > 20 ? x : log1p(exp(x)).");
  k.def(
      "gate_silu",
      [](const py::array& x, const py::array& z, const py::object& out) {
        return elementwise("gate_silu", cpu_kernels().gate_silu, x, z, out);
      },
      py::arg("x"), py::arg("z"), py::arg("out") = none, "x * silu(z).");
  k.def(
      "gate_gelu",
      [](const py::array& x, const py::array& z, const py::object& out) {
        return elementwise("gate_gelu", cpu_kernels().gate_gelu, x, z, out);
      },
      py::arg("x"), py::arg("z"), py::arg("out") = none, "x * gelu(z), the exact (erf) gelu.");
  k.def(
      "relu_sq",
      [](const py::array& x, const py::object& out) {
        return elementwise("relu_sq", cpu_kernels().relu_sq, x, py::none(), out);
      },
      py::arg("x"), py::arg("out") = none, "max(x, 0)^2.");
  k.def("attention", &attention, py::arg("q"), py::arg("ks"), py::arg("vs"), py::arg("lens"), py::arg("n_heads"),
        py::arg("n_kv_heads"), py::arg("scale"), py::arg("out") = none,
        "Causal GQA attention: row r of q (rows, n_heads*d) over the first lens[r] keys of ks[r], vs[r] "
        "(S_r, n_kv_heads, d).");
  k.def("route", &route, py::arg("logits"), py::arg("top_k"), py::arg("sigmoid"), py::arg("normalize"),
        py::arg("scale") = 1.0f, py::arg("bias") = none, py::arg("n_group") = 1, py::arg("topk_group") = 1,
        "MoE routing (see cpp/kernels/moe.h): (index (rows, top_k) int32, weight (rows, top_k)).");
  k.def("rope", &rope, py::arg("x"), py::arg("pos"), py::arg("inv_freq"), py::arg("n_heads"), py::arg("scale") = 1.0f,
        "Rotary embedding in place (rotate_half layout) of the first 2 * len(inv_freq) dims of every head,\n"
        "cos and sin times scale.");
}
