// Each bind_*.cpp adds one part of the mambart._core module.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

namespace py = pybind11;

#include "tensor.h"

void bind_tensor(py::module_& m);
void bind_kernels(py::module_& m);
void bind_sampler(py::module_& m);
void bind_model(py::module_& m);
void bind_cuda(py::module_& m);

// A typed tensor over a numpy buffer, keeping the array alive (bind_tensor.cpp).
mambart::Tensor borrow_numpy(const py::array& array, mambart::DType dtype, std::vector<int64_t> shape);
