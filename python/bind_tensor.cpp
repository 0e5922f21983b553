// Tensor: a typed view of a numpy buffer, for weights that are already in
// a weight type (f16, bf16, q8, q4) and must not be converted again.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "check.h"
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

void bind_tensor(py::module_& m) {
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
