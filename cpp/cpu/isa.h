// The one CPU dispatch point. isa.cpp detects the instruction set once
// (cpuid + XGETBV), fills this table, and nothing else branches on the ISA.
// MAMBART_CPU_ISA=scalar|avx2|avx512|neon in the environment, or set_isa(),
// overrides it. avx512 (AVX-512 F/BW/VL + VNNI) is the avx2 table with its
// own matmuls, Mamba-1 scan and attention (isa.cpp's avx512_table says which).
#pragma once
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/conv1d.h"
#include "kernels/elementwise.h"
#include "kernels/matmul.h"
#include "kernels/moe.h"
#include "kernels/rmsnorm.h"
#include "kernels/scan.h"
#include "kernels/ssd.h"

namespace mambart {

struct CpuKernels {
  const char* isa;
  void (*matmul[7])(const MatmulParams&, int64_t, int64_t);  // indexed by the weight DType (none for I32)
  // The backend keeps f32 matrices as f32p (kernels/quantize.h): where the
  // GEMM would otherwise repack every panel of every call.
  bool f32_panels;
  void (*rmsnorm)(const RmsnormParams&, int64_t, int64_t);
  void (*rmsnorm_gated)(const RmsnormGatedParams&, int64_t, int64_t);
  void (*conv1d_prefill)(const Conv1dParams&, int64_t, int64_t);
  void (*conv1d_step)(const Conv1dParams&, int64_t, int64_t);
  void (*scan_prefill)(const ScanParams&, int64_t, int64_t);
  void (*scan_step)(const ScanParams&, int64_t, int64_t);
  void (*ssd_prefill)(const SsdParams&, int64_t, int64_t);
  void (*ssd_step)(const SsdParams&, int64_t, int64_t);
  void (*silu)(const ElementwiseParams&, int64_t, int64_t);
  void (*softplus)(const ElementwiseParams&, int64_t, int64_t);
  void (*gate_silu)(const ElementwiseParams&, int64_t, int64_t);
  void (*gate_gelu)(const ElementwiseParams&, int64_t, int64_t);
  void (*relu_sq)(const ElementwiseParams&, int64_t, int64_t);
  void (*attention)(const AttentionParams&, int64_t, int64_t);
  void (*rope)(const RopeParams&, int64_t, int64_t);
  void (*route)(const RouterParams&, int64_t, int64_t);
};

// The active table (detected on first use, or as last set).
const CpuKernels& cpu_kernels();
// Force an ISA by name; throws if this machine or build cannot run it.
void set_isa(const std::string& name);
// ISAs this machine can run, best last ("scalar" is always first).
std::vector<std::string> available_isas();

}  // namespace mambart
