#include "bindings.h"

void bind_kernels(py::module_& m) {}
