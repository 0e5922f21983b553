// Tensor: dtype, shape, strides, device and a storage that is owned,
// borrowed (a numpy buffer, an mmapped checkpoint). Nothing more: kernels
// take raw pointers (kernels/*.h), the model keeps its weights in Tensors.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <vector>

namespace mambart {

// F32P: f32 matrices in the CPU GEMM's panels (kernels/quantize.h), made at
// load by the CPU backend; never in files.
enum class DType { F32, F16, BF16, Q8, Q4, I32, F32P };
enum class Device { CPU, CUDA };

const char* dtype_name(DType dtype);
DType dtype_from_name(const std::string& name);  // "f32", "bf16", ...; throws on others
size_t dtype_size(DType dtype);  // bytes per element (0 for block types)
std::string shape_str(const std::vector<int64_t>& shape);
// Storage bytes of `shape` in `dtype` (block types: 2-D, rows of
// row_bytes). Throws Error for a negative dimension or a size that
// overflows int64, so every Tensor's numel() and nbytes() are exact.
int64_t checked_nbytes(const std::vector<int64_t>& shape, DType dtype);

// A failed allocation, with the size asked for (Python: MemoryError).
struct OutOfMemory : std::bad_alloc {
  explicit OutOfMemory(std::string what) : what_(std::move(what)) {}
  const char* what() const noexcept override { return what_.c_str(); }
  std::string what_;
};

class Tensor {
 public:
  Tensor() = default;

  // Owned host storage, 64-byte aligned, zero-filled. Weight types of 2-D
  // shape (N, K) get N rows of row_bytes(dtype, K) (kernels/quantize.h).
  static Tensor zeros(std::vector<int64_t> shape, DType dtype = DType::F32);
  // The same storage left as the allocator gives it, for a caller that
  // writes all of it (a weight converted at load).
  static Tensor uninitialized(std::vector<int64_t> shape, DType dtype);
  // Borrowed storage: `owner` (may be null) is kept alive as long as the tensor.
  // Both check the shape with checked_nbytes.
  static Tensor borrow(void* data, std::vector<int64_t> shape, DType dtype, std::shared_ptr<void> owner,
                       Device device = Device::CPU);

  bool defined() const { return data_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  const std::vector<int64_t>& strides() const { return strides_; }
  int64_t dim(size_t i) const { return shape_.at(i); }
  int64_t ndim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t numel() const;
  size_t nbytes() const;  // storage bytes (block types: rows of row_bytes)

  template <typename T>
  T* data() const { return static_cast<T*>(data_); }

  // Rows [r0, r1) of a 2-D tensor, sharing its storage (rows are contiguous
  // in every type, block types included; F32P: whole panels only).
  Tensor rows(int64_t r0, int64_t r1) const;

 private:
  std::shared_ptr<void> storage_;
  void* data_ = nullptr;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
  std::vector<int64_t> shape_, strides_;  // strides in elements, row-major
};

}  // namespace mambart
