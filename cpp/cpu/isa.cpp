// The one CPU dispatch point: see isa.h.
#include "cpu/isa.h"

#include <cstdlib>

#include "check.h"

namespace mambart {

namespace {

const CpuKernels kScalar = {
    "scalar",
    scalar::matmul,
    scalar::rmsnorm,
    scalar::conv1d_prefill,
    scalar::conv1d_step,
    scalar::scan_prefill,
    scalar::scan_step,
    scalar::silu,
    scalar::softplus,
    scalar::gate_silu,
};

const CpuKernels* table_for(const std::string& name) {
  if (name == "scalar") return &kScalar;
  return nullptr;
}

const CpuKernels* detect() {
  const char* forced = std::getenv("MAMBART_CPU_ISA");
  if (forced && *forced) {
    const CpuKernels* t = table_for(forced);
    MAMBART_CHECK(t, "[isa] MAMBART_CPU_ISA=", forced, " is not available on this machine");
    return t;
  }
  return &kScalar;
}

const CpuKernels*& active() {
  static const CpuKernels* table = detect();
  return table;
}

}  // namespace

const CpuKernels& cpu_kernels() { return *active(); }

void set_isa(const std::string& name) {
  const CpuKernels* t = table_for(name);
  MAMBART_CHECK(t, "[isa] '", name, "' is not available on this machine");
  active() = t;
}

std::vector<std::string> available_isas() { return {"scalar"}; }

}  // namespace mambart
