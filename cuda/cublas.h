// The few cuBLAS entry points the CUDA backend uses, declared here and
// resolved at run time from libcublas.so.13 / .12 (dlopen): the build needs
// no cuBLAS headers or libraries, and a machine without cuBLAS gets an
// error naming the library when a CUDA model is created, not at import.
// Prototypes and enum values from the cuBLAS API reference (cublas_api.h).
#pragma once
#include <cuda_runtime.h>
#include <library_types.h>

namespace mambart {
namespace cuda {

using cublasHandle_t = struct cublasContext*;
using cublasStatus_t = int;  // CUBLAS_STATUS_SUCCESS = 0
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };

struct Cublas {
  cublasStatus_t (*create)(cublasHandle_t*);
  cublasStatus_t (*destroy)(cublasHandle_t);
  cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t);
  cublasStatus_t (*set_workspace)(cublasHandle_t, void*, size_t);
  cublasStatus_t (*sgemm)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const float*,
                          const float*, int, const float*, int, const float*, float*, int);
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                            const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                            cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
};

// Loads the library once; throws mambart::Error naming it when missing.
const Cublas& cublas();

}  // namespace cuda
}  // namespace mambart
