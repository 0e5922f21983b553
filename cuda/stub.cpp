// The CUDA entry points of a CPU-only build (MAMBART_CUDA=OFF, or AUTO
// without a toolkit): model code calls make_cuda_backend unconditionally.
#include "backend.h"
#include "check.h"

namespace mambart {

std::unique_ptr<Backend> make_cuda_backend(int) {
  MAMBART_CHECK(false, "[cuda] mambart was built without CUDA (rebuild with -DMAMBART_CUDA=ON and a CUDA toolkit)");
  return nullptr;
}
bool cuda_built() { return false; }
int cuda_device_count() { return 0; }

}  // namespace mambart
