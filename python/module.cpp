#include "bindings.h"

#ifndef MAMBART_VERSION
#define MAMBART_VERSION "dev"
#endif

PYBIND11_MODULE(_core, m) {
  m.doc() = "mambart's C++ core: CPU kernels, the Mamba model, decoder and samplers.";
  m.attr("__version__") = MAMBART_VERSION;
  bind_tensor(m);
  bind_kernels(m);
  bind_sampler(m);
  bind_model(m);
  bind_cuda(m);
}
