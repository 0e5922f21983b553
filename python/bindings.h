// Each bind_*.cpp adds one part of the mambart._core module.
#pragma once
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_kernels(py::module_& m);
void bind_sampler(py::module_& m);
void bind_model(py::module_& m);
