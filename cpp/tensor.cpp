#include "tensor.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "check.h"
#include "kernels/quantize.h"

namespace mambart {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::Q8: return "q8";
    case DType::Q4: return "q4";
    case DType::I32: return "i32";
    case DType::F32P: return "f32p";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8, DType::Q4, DType::I32})
    if (name == dtype_name(t)) return t;
  MAMBART_CHECK(false, "[tensor] unknown dtype '", name, "' (expected f32, f16, bf16, q8, q4 or i32)");
  return DType::F32;
}

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: return 2;
    default: return 0;
  }
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << '(';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << (shape.size() == 1 ? ",)" : ")");
  return os.str();
}

static std::vector<int64_t> row_major_strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

int64_t checked_nbytes(const std::vector<int64_t>& shape, DType dtype) {
  for (int64_t d : shape)
    MAMBART_CHECK(d >= 0, "[tensor] negative dimension in shape ", shape_str(shape));
  const bool blocks = dtype == DType::Q8 || dtype == DType::Q4 || dtype == DType::F32P;
  MAMBART_CHECK(!blocks || shape.size() == 2, "[tensor] ", dtype_name(dtype), " tensors are 2-D, got ",
                shape_str(shape));
  try {
    if (blocks) return size_mul(stored_rows(dtype, shape[0]), row_bytes(dtype, shape[1]), "tensor");
    int64_t n = static_cast<int64_t>(dtype_size(dtype));
    for (int64_t d : shape) n = size_mul(n, d, "tensor");
    return n;
  } catch (const Error&) {
    MAMBART_CHECK(false, "[tensor] ", dtype_name(dtype), " shape ", shape_str(shape), " is too large: its size overflows int64");
  }
  return 0;
}

size_t Tensor::nbytes() const {
  if (dtype_size(dtype_) > 0) return static_cast<size_t>(numel()) * dtype_size(dtype_);
  return static_cast<size_t>(stored_rows(dtype_, shape_[0]) * row_bytes(dtype_, shape_[1]));
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;  // no overflow: checked_nbytes accepted the shape
  return n;
}

Tensor Tensor::zeros(std::vector<int64_t> shape, DType dtype) {
  Tensor t = uninitialized(std::move(shape), dtype);
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::uninitialized(std::vector<int64_t> shape, DType dtype) {
  const int64_t nbytes = checked_nbytes(shape, dtype);
  Tensor t;
  t.shape_ = std::move(shape);
  t.strides_ = row_major_strides(t.shape_);
  t.dtype_ = dtype;
  // Round up to the alignment: aligned_alloc requires a multiple of it.
  MAMBART_CHECK(nbytes <= INT64_MAX - 64, "[tensor] shape ", shape_str(t.shape_), " is too large");
  const size_t bytes = static_cast<size_t>(std::max<int64_t>(nbytes, 1) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw OutOfMemory(detail::concat("[tensor] cannot allocate ", bytes, " bytes for ", dtype_name(dtype), " ",
                                           shape_str(t.shape_)));
  t.storage_ = std::shared_ptr<void>(p, std::free);
  t.data_ = p;
  return t;
}

Tensor Tensor::borrow(void* data, std::vector<int64_t> shape, DType dtype, std::shared_ptr<void> owner,
                      Device device) {
  checked_nbytes(shape, dtype);
  Tensor t;
  t.shape_ = std::move(shape);
  t.strides_ = row_major_strides(t.shape_);
  t.dtype_ = dtype;
  t.device_ = device;
  t.storage_ = std::move(owner);
  t.data_ = data;
  return t;
}

Tensor Tensor::rows(int64_t r0, int64_t r1) const {
  MAMBART_CHECK(shape_.size() == 2 && 0 <= r0 && r0 <= r1 && r1 <= shape_[0], "[tensor] rows [", r0, ", ", r1,
                ") of a tensor of shape ", shape_str(shape_));
  MAMBART_CHECK(dtype_ != DType::F32P || (r0 % kPanelRows == 0 && (r1 % kPanelRows == 0 || r1 == shape_[0])),
                "[tensor] rows [", r0, ", ", r1, ") of an f32p tensor are not whole panels of ", kPanelRows);
  Tensor t = *this;
  t.shape_[0] = r1 - r0;
  const bool blocks = dtype_size(dtype_) == 0;
  const int64_t row = blocks ? row_bytes(dtype_, shape_[1]) : shape_[1] * static_cast<int64_t>(dtype_size(dtype_));
  t.data_ = static_cast<char*>(data_) + r0 * row;
  return t;
}

}  // namespace mambart
