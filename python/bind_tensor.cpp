// Tensor: a typed view of a numpy buffer, for weights that are already in
// a weight type (f16, bf16, q8, q4) and must not be converted again.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "check.h"
#include "kernels/quantize.h"
#include "tensor.h"

using namespace mambart;

Tensor borrow_numpy(const py::array& array, DType dtype, std::vector<int64_t> shape) {
  MAMBART_CHECK(array.flags() & py::array::c_style, "[tensor] array must be C-contiguous");
  Tensor t = Tensor::borrow(const_cast<void*>(array.data()), std::move(shape), dtype, nullptr);
  MAMBART_CHECK(static_cast<size_t>(array.nbytes()) == t.nbytes(), "[tensor] ", dtype_name(dtype), " ",
                shape_str(t.shape()), " needs ", t.nbytes(), " bytes, the array has ", array.nbytes());
  auto* keep = new py::object(array);
  std::shared_ptr<void> owner(keep, [](void* p) {
    py::gil_scoped_acquire gil;
    delete static_cast<py::object*>(p);
  });
  return Tensor::borrow(const_cast<void*>(array.data()), t.shape(), dtype, owner);
}

namespace {

// w (N, K) float32 -> the stored form of `dtype`: uint16 (N, K) for f16 / bf16,
// uint8 (N, row_bytes) for q8 / q4, float32 for f32.
py::array convert_weight(const py::array_t<float, py::array::c_style | py::array::forcecast>& w,
                         const std::string& dtype) {
  MAMBART_CHECK(w.ndim() == 2, "[convert] weight must be 2-D (N, K), got ", w.ndim(), "-D");
  const DType type = dtype_from_name(dtype);
  const int64_t N = w.shape(0), K = w.shape(1);
  const int64_t bytes = row_bytes(type, K);
  py::array out = type == DType::F32   ? py::array(py::dtype("float32"), {N, K})
                  : type == DType::Q8 || type == DType::Q4 ? py::array(py::dtype("uint8"), {N, bytes})
                                                           : py::array(py::dtype("uint16"), {N, K});
  const float* src = w.data();
  void* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    convert_rows(src, N, K, type, dst);
  }
  return out;
}

// The inverse: a stored (N, K) weight of `dtype` back to float32.
py::array_t<float> dequantize_weight(const py::array& raw, const std::string& dtype, int64_t K) {
  const DType type = dtype_from_name(dtype);
  MAMBART_CHECK(raw.ndim() == 2 && (raw.flags() & py::array::c_style), "[dequantize] raw must be a 2-D C-contiguous array");
  const int64_t N = raw.shape(0), bytes = row_bytes(type, K);
  MAMBART_CHECK(raw.nbytes() == N * bytes, "[dequantize] ", N, " rows of ", dtype, " with K=", K, " need ",
                N * bytes, " bytes, got ", raw.nbytes());
  py::array_t<float> out({N, K});
  const char* src = static_cast<const char*>(raw.data());
  float* dst = out.mutable_data();
  py::gil_scoped_release nogil;
  for (int64_t n = 0; n < N; ++n) dequantize_row(src + n * bytes, type, K, dst + n * K);
  return out;
}

}  // namespace

void bind_tensor(py::module_& m) {
  m.def("convert_weight", &convert_weight, py::arg("w"), py::arg("dtype"),
        "A (N, K) float32 weight in the stored form of dtype (f32, f16, bf16: (N, K); q8, q4: uint8 rows).");
  m.def("dequantize_weight", &dequantize_weight, py::arg("raw"), py::arg("dtype"), py::arg("K"),
        "A stored (N, K) weight of dtype back to float32.");
  py::class_<Tensor>(m, "Tensor", "A typed view of a numpy buffer (kept alive by the tensor).")
      .def(py::init([](const py::array& array, const std::string& dtype, std::vector<int64_t> shape) {
             return borrow_numpy(array, dtype_from_name(dtype), std::move(shape));
           }),
           py::arg("array"), py::arg("dtype"), py::arg("shape"),
           "array holds the raw bytes of a (shape) tensor of dtype: f16/bf16 as uint16 (N, K), "
           "q8/q4 as uint8 rows (see cpp/kernels/quantize.h).")
      .def_property_readonly("dtype", [](const Tensor& t) { return std::string(dtype_name(t.dtype())); })
      .def_property_readonly("shape", &Tensor::shape)
      .def_property_readonly("nbytes", &Tensor::nbytes);
}
