// The one CPU dispatch point: see isa.h.
#include "cpu/isa.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>

#include "check.h"

#if defined(__x86_64__) || defined(_M_X64)
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace mambart {

namespace {

const CpuKernels kScalar = {
    "scalar",
    {scalar::matmul_f32, scalar::matmul_f16, scalar::matmul_bf16, scalar::matmul_q8, scalar::matmul_q4, nullptr,
     scalar::matmul_f32p},
    false,
    scalar::rmsnorm,
    scalar::rmsnorm_gated,
    scalar::conv1d_prefill,
    scalar::conv1d_step,
    scalar::scan_prefill,
    scalar::scan_step,
    scalar::ssd_prefill,
    scalar::ssd_step,
    scalar::silu,
    scalar::softplus,
    scalar::gate_silu,
    scalar::gate_gelu,
    scalar::relu_sq,
    scalar::attention,
    scalar::rope,
    scalar::route,
};

#if defined(__x86_64__) || defined(_M_X64)

const CpuKernels kAvx2 = {
    "avx2",
    {avx2::matmul_f32, avx2::matmul_f16, avx2::matmul_bf16, avx2::matmul_q8, avx2::matmul_q4, nullptr,
     avx2::matmul_f32p},
    true,
    avx2::rmsnorm,
    avx2::rmsnorm_gated,
    avx2::conv1d_prefill,
    avx2::conv1d_step,
    avx2::scan_prefill,
    avx2::scan_step,
    avx2::ssd_prefill,
    avx2::ssd_step,
    avx2::silu,
    avx2::softplus,
    avx2::gate_silu,
    avx2::gate_gelu,
    avx2::relu_sq,
    avx2::attention,
    scalar::rope,  // a few sin/cos per row and head pair: not worth vectors
    scalar::route,
};

// cpuid(leaf, subleaf) -> {eax, ebx, ecx, edx}; zeros if the leaf is absent.
void cpuid(uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
  r[0] = r[1] = r[2] = r[3] = 0;
#if defined(_MSC_VER)
  int max_regs[4], regs[4];
  __cpuid(max_regs, static_cast<int>(leaf & 0x80000000u));
  if (static_cast<uint32_t>(max_regs[0]) < leaf) return;
  __cpuidex(regs, static_cast<int>(leaf), static_cast<int>(subleaf));
  for (int i = 0; i < 4; ++i) r[i] = static_cast<uint32_t>(regs[i]);
#else
  if (__get_cpuid_max(leaf & 0x80000000u, nullptr) < leaf) return;
  __cpuid_count(leaf, subleaf, r[0], r[1], r[2], r[3]);
#endif
}

// XCR0: which register states the OS saves on a context switch.
uint64_t xgetbv0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
#endif
}

// AVX2 + FMA usable: the CPU has them (leaf 1 ECX: FMA bit 12, OSXSAVE 27,
// AVX 28, F16C 29 (the f16 matmul converts with it); leaf 7 EBX: AVX2 bit 5) and the OS saves the ymm registers
// (XCR0 bits 1 = SSE and 2 = AVX state). OSXSAVE is checked before XGETBV,
// which faults without it.
bool has_avx2_fma() {
  uint32_t r1[4], r7[4];
  cpuid(1, 0, r1);
  const uint32_t ecx = r1[2];
  const bool fma = ecx & (1u << 12), osxsave = ecx & (1u << 27), avx = ecx & (1u << 28), f16c = ecx & (1u << 29);
  if (!(fma && osxsave && avx && f16c)) return false;
  if ((xgetbv0() & 0x6) != 0x6) return false;
  cpuid(7, 0, r7);
  return r7[1] & (1u << 5);
}

// AVX-512 with VNNI usable: AVX2 as above; leaf 7 EBX: AVX512F bit 16,
// AVX512BW 30, AVX512VL 31; ECX: AVX512_VNNI bit 11; and the OS saves the
// opmask, upper-ZMM0-15 and ZMM16-31 state (XCR0 bits 5-7) with SSE and AVX.
bool has_avx512_vnni() {
  if (!has_avx2_fma()) return false;
  if ((xgetbv0() & 0xE6) != 0xE6) return false;
  uint32_t r7[4];
  cpuid(7, 0, r7);
  const uint32_t ebx = r7[1], ecx = r7[2];
  return (ebx & (1u << 16)) && (ebx & (1u << 30)) && (ebx & (1u << 31)) && (ecx & (1u << 11));
}

// The avx2 table with q4's and q8's decode matmuls in VNNI, the dense
// types' decode in 16 lanes and 32 registers, every type's prefill
// GEMM in 512-bit tiles (cpu/matmul_avx512.cpp), the Mamba-1 scan 16
// state entries at a time, and attention 16 dims at a time; the rest had no measured gain from 512-bit
// versions, or none was written.
CpuKernels avx512_table() {
  CpuKernels t = kAvx2;
  t.isa = "avx512";
  t.matmul[static_cast<int>(DType::F32)] = avx512::matmul_f32;
  t.matmul[static_cast<int>(DType::F16)] = avx512::matmul_f16;
  t.matmul[static_cast<int>(DType::BF16)] = avx512::matmul_bf16;
  t.matmul[static_cast<int>(DType::Q8)] = avx512::matmul_q8;
  t.matmul[static_cast<int>(DType::Q4)] = avx512::matmul_q4;
  t.matmul[static_cast<int>(DType::F32P)] = avx512::matmul_f32p;
  t.scan_prefill = avx512::scan_prefill, t.scan_step = avx512::scan_step;
  t.attention = avx512::attention;
  return t;
}
const CpuKernels kAvx512 = avx512_table();

#endif  // x86-64

#if defined(__aarch64__)

// Every AArch64 CPU has NEON, and every kernel family has a NEON version:
// matmul, scan, SSD, conv1d, rmsnorm, activations, attention. Built on the
// scalar table so that a family without one would fall back to scalar (rope,
// a few sin/cos per row and head pair, MoE routing, per token not per weight,
// and gelu's gate).
CpuKernels neon_table() {
  CpuKernels t = kScalar;
  t.isa = "neon";
  t.matmul[0] = neon::matmul_f32, t.matmul[1] = neon::matmul_f16, t.matmul[2] = neon::matmul_bf16;
  t.matmul[3] = neon::matmul_q8, t.matmul[4] = neon::matmul_q4;
  t.scan_prefill = neon::scan_prefill, t.scan_step = neon::scan_step;
  t.ssd_prefill = neon::ssd_prefill, t.ssd_step = neon::ssd_step;
  t.conv1d_prefill = neon::conv1d_prefill, t.conv1d_step = neon::conv1d_step;
  t.rmsnorm = neon::rmsnorm, t.rmsnorm_gated = neon::rmsnorm_gated;
  t.silu = neon::silu, t.softplus = neon::softplus, t.gate_silu = neon::gate_silu;
  t.relu_sq = neon::relu_sq, t.attention = neon::attention;
  return t;
}
const CpuKernels kNeon = neon_table();

#endif  // arm64

// Every table this build has, worst first, with whether this machine runs it.
struct Entry {
  const CpuKernels* table;
  bool usable;
};

const std::vector<Entry>& entries() {
  static const std::vector<Entry> all = {
      {&kScalar, true},
#if defined(__x86_64__) || defined(_M_X64)
      {&kAvx2, has_avx2_fma()},
      {&kAvx512, has_avx512_vnni()},
#endif
#if defined(__aarch64__)
      {&kNeon, true},
#endif
  };
  return all;
}

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// The usable table called `name`; throws naming what would have worked.
const CpuKernels* find(const std::string& name, const char* source) {
  std::vector<std::string> known;
  for (const Entry& e : entries()) {
    if (name == e.table->isa) {
      MAMBART_CHECK(e.usable, "[isa] ", source, "'", name,
                    "' is not supported by this CPU (available: ", join(available_isas()), ")");
      return e.table;
    }
    known.push_back(e.table->isa);
  }
  MAMBART_CHECK(false, "[isa] ", source, "'", name, "' is not a known ISA (known: ", join(known), ")");
  return nullptr;
}

// MAMBART_CPU_ISA if set, else the best usable table.
const CpuKernels* detect() {
  const char* forced = std::getenv("MAMBART_CPU_ISA");
  if (forced && *forced) return find(forced, "MAMBART_CPU_ISA=");
  const CpuKernels* best = &kScalar;
  for (const Entry& e : entries())
    if (e.usable) best = e.table;
  return best;
}

// Set on first use (a bad MAMBART_CPU_ISA throws there, and again on every
// use until set_isa picks a valid one). Concurrent first uses detect the
// same table, so a plain atomic is enough.
std::atomic<const CpuKernels*> g_active{nullptr};

}  // namespace

const CpuKernels& cpu_kernels() {
  const CpuKernels* t = g_active.load(std::memory_order_acquire);
  if (!t) {
    t = detect();
    g_active.store(t, std::memory_order_release);
  }
  return *t;
}

void set_isa(const std::string& name) { g_active.store(find(name, ""), std::memory_order_release); }

std::vector<std::string> available_isas() {
  std::vector<std::string> names;
  for (const Entry& e : entries())
    if (e.usable) names.push_back(e.table->isa);
  return names;
}

}  // namespace mambart
