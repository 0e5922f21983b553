// Looks weights up by internal name (mambart/weights.py), checks dtype and
// shape, and uploads them to the backend; reports tensors left unused.
#pragma once
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "backend.h"
#include "check.h"

namespace mambart {

class WeightTable {
 public:
  WeightTable(const std::map<std::string, Tensor>& weights, Backend& backend)
      : weights_(weights), backend_(backend) {}

  // Shape of the named tensor; empty if absent.
  std::vector<int64_t> shape_of(const std::string& name) const {
    auto it = weights_.find(name);
    return it == weights_.end() ? std::vector<int64_t>{} : it->second.shape();
  }

  // The named host tensor, checked against `shape` (and to be f32 unless
  // any_type); undefined if absent and not required.
  Tensor host(const std::string& name, const std::vector<int64_t>& shape, bool required = true,
              bool any_type = false) {
    auto it = weights_.find(name);
    if (it == weights_.end()) {
      MAMBART_CHECK(!required, "[model] missing tensor '", name, "'");
      return Tensor();
    }
    const Tensor& t = it->second;
    MAMBART_CHECK(any_type || t.dtype() == DType::F32, "[model] tensor '", name, "' has dtype ",
                  dtype_name(t.dtype()), ", expected f32 (only the big matrices take other types)");
    MAMBART_CHECK(t.shape() == shape, "[model] tensor '", name, "' has shape ", shape_str(t.shape()),
                  ", expected ", shape_str(shape));
    used_ += 1;
    return t;
  }

  // The same, uploaded to the backend.
  Tensor get(const std::string& name, const std::vector<int64_t>& shape, bool required = true) {
    Tensor t = host(name, shape, required);
    return t.defined() ? count(backend_.upload(t)) : t;
  }

  // A big matrix (N, K), in whatever weight type it came in, for matmul
  // (and embedding lookups): in the backend's form (Backend::upload_matrix).
  Tensor matrix(const std::string& name, const std::vector<int64_t>& shape, bool required = true) {
    Tensor t = host(name, shape, required, /*any_type=*/true);
    return t.defined() ? count(backend_.upload_matrix(t)) : t;
  }

  // The same, cut at rows `cuts` (increasing) into matrices of their own:
  // rows [0, cuts[0]), [cuts[0], cuts[1]), ..., [cuts.back(), N).
  std::vector<Tensor> matrix_rows(const std::string& name, const std::vector<int64_t>& shape,
                                  const std::vector<int64_t>& cuts) {
    const Tensor t = host(name, shape, true, /*any_type=*/true);
    std::vector<Tensor> parts;
    int64_t r0 = 0;
    for (size_t i = 0; i <= cuts.size(); ++i) {
      const int64_t r1 = i < cuts.size() ? cuts[i] : shape[0];
      parts.push_back(count(backend_.upload_matrix(t.rows(r0, r1))));
      r0 = r1;
    }
    return parts;
  }

  // A matrix that is only looked up by row (an untied embedding), as it came.
  Tensor table(const std::string& name, const std::vector<int64_t>& shape) {
    return count(backend_.upload(host(name, shape, true, /*any_type=*/true)));
  }

  size_t bytes() const { return bytes_; }

  // -exp(A_log), computed once in f32 (reference doc 7.1), uploaded.
  Tensor negative_exp(const std::string& name, const std::vector<int64_t>& shape) {
    Tensor a_log = host(name, shape);
    Tensor A = Tensor::zeros(shape);
    for (int64_t i = 0; i < A.numel(); ++i) A.data<float>()[i] = -std::exp(a_log.data<float>()[i]);
    return count(backend_.upload(A));
  }

  void check_all_used() const {
    MAMBART_CHECK(used_ == weights_.size(), "[model] ", weights_.size() - used_,
                  " tensor(s) were not used by the model; the weights do not match the config");
  }

 private:
  // The weights' own bytes: f32p's zero rows that pad its last panel are not weights.
  Tensor count(Tensor t) {
    bytes_ += t.dtype() == DType::F32P ? static_cast<size_t>(t.numel()) * 4 : t.nbytes();
    return t;
  }

  const std::map<std::string, Tensor>& weights_;
  Backend& backend_;
  size_t used_ = 0, bytes_ = 0;
};

}  // namespace mambart
