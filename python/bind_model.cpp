// Model and Decoder. Arrays cross without copies: weights are borrowed from
// the numpy arrays (kept alive by the Model), logits come back as numpy.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>


#include "bindings.h"
#include "check.h"
#include "model/decoder.h"

using namespace mambart;

namespace {

using F32Array = py::array_t<float, py::array::c_style>;

// A weight: a float32 C-contiguous array (borrowed, kept alive), or a
// _core.Tensor already in a weight type.
Tensor weight_tensor(const std::string& name, const py::handle& obj) {
  if (py::isinstance<Tensor>(obj)) return py::cast<Tensor>(obj);
  MAMBART_CHECK(py::isinstance<F32Array>(obj), "[model] weight '", name,
                "' must be a float32 C-contiguous array or a mambart._core.Tensor");
  auto arr = py::reinterpret_borrow<py::array>(obj);
  return borrow_numpy(arr, DType::F32, std::vector<int64_t>(arr.shape(), arr.shape() + arr.ndim()));
}

py::array_t<float> to_numpy(std::vector<float>&& v, std::vector<int64_t> shape) {
  auto* heap = new std::vector<float>(std::move(v));
  py::capsule free_when_done(heap, [](void* p) { delete static_cast<std::vector<float>*>(p); });
  return py::array_t<float>(shape, heap->data(), free_when_done);
}

// A capsule that keeps a tensor's storage alive.
py::capsule keep_alive(const Tensor& t) {
  return py::capsule(new Tensor(t), [](void* p) { delete static_cast<Tensor*>(p); });
}

// An f32 tensor as numpy: a view of host memory, a copy of device memory.
py::array_t<float> host_array(const Tensor& t, Backend& be) {
  if (t.device() == Device::CPU) return py::array_t<float>(t.shape(), t.data<float>(), keep_alive(t));
  std::vector<float> host(static_cast<size_t>(t.numel()));
  be.to_host(t.data<float>(), host.data(), t.numel());
  return to_numpy(std::move(host), t.shape());
}

// __cuda_array_interface__ (version 3) of an f32 device tensor, and the
// capsule that keeps its memory alive.
py::tuple device_array(const Tensor& t) {
  MAMBART_CHECK(t.device() == Device::CUDA, "[logits] the logits are in host memory: use logits()");
  py::dict cai;
  py::tuple shape(t.ndim());
  for (int64_t i = 0; i < t.ndim(); ++i) shape[static_cast<size_t>(i)] = t.dim(static_cast<size_t>(i));
  cai["shape"] = shape;
  cai["typestr"] = "<f4";
  cai["data"] = py::make_tuple(reinterpret_cast<uintptr_t>(t.data<void>()), false);
  cai["strides"] = py::none();
  cai["version"] = 3;
  return py::make_tuple(cai, keep_alive(t));
}

}  // namespace

void bind_model(py::module_& m) {
  py::enum_<Family>(m, "Family", "Mixer family.")
      .value("MAMBA1", Family::Mamba1)
      .value("MAMBA2", Family::Mamba2);

  py::class_<ModelConfig>(m, "ModelConfig", "Sizes of a Mamba model (names as mamba_ssm's config).")
      .def(py::init<>())
      .def_readwrite("family", &ModelConfig::family)
      .def_readwrite("d_model", &ModelConfig::d_model)
      .def_readwrite("n_layer", &ModelConfig::n_layer)
      .def_readwrite("vocab_size", &ModelConfig::vocab_size)
      .def_readwrite("d_inner", &ModelConfig::d_inner)
      .def_readwrite("d_state", &ModelConfig::d_state)
      .def_readwrite("d_conv", &ModelConfig::d_conv)
      .def_readwrite("dt_rank", &ModelConfig::dt_rank)
      .def_readwrite("n_heads", &ModelConfig::n_heads)
      .def_readwrite("head_dim", &ModelConfig::head_dim)
      .def_readwrite("n_groups", &ModelConfig::n_groups)
      .def_readwrite("chunk_size", &ModelConfig::chunk_size)
      .def_readwrite("dt_min", &ModelConfig::dt_min)
      .def_readwrite("dt_max", &ModelConfig::dt_max)
      .def_readwrite("eps", &ModelConfig::eps)
      .def_readwrite("tie_embeddings", &ModelConfig::tie_embeddings)
      .def_property_readonly("conv_channels", &ModelConfig::conv_channels, "Channels through the conv.")
      .def_property_readonly("ssm_state_size", &ModelConfig::ssm_state_size, "SSM state floats per row and layer.")
      .def_property_readonly("mamba_layers", &ModelConfig::mamba_layers,
                             "Layers with conv and SSM state (all but the attention layers).")
      .def_readwrite("dt_bc_norm", &ModelConfig::dt_bc_norm)
      .def_readwrite("dt_bc_eps", &ModelConfig::dt_bc_eps)
      .def_readwrite("layers", &ModelConfig::layers)
      .def_readwrite("attn_heads", &ModelConfig::attn_heads)
      .def_readwrite("kv_heads", &ModelConfig::kv_heads)
      .def_readwrite("attn_head_dim", &ModelConfig::attn_head_dim)
      .def_readwrite("attn_scale", &ModelConfig::attn_scale)
      .def_readwrite("rope_dim", &ModelConfig::rope_dim)
      .def_readwrite("rope_inv_freq", &ModelConfig::rope_inv_freq)
      .def_readwrite("rope_scale", &ModelConfig::rope_scale)
      .def_readwrite("mlp_gated", &ModelConfig::mlp_gated)
      .def_readwrite("mlp_inner", &ModelConfig::mlp_inner)
      .def_readwrite("shared_inner", &ModelConfig::shared_inner)
      .def_readwrite("n_experts", &ModelConfig::n_experts)
      .def_readwrite("top_k", &ModelConfig::top_k)
      .def_readwrite("expert_inner", &ModelConfig::expert_inner)
      .def_readwrite("expert_latent", &ModelConfig::expert_latent)
      .def_readwrite("n_group", &ModelConfig::n_group)
      .def_readwrite("topk_group", &ModelConfig::topk_group)
      .def_readwrite("router_sigmoid", &ModelConfig::router_sigmoid)
      .def_readwrite("norm_topk", &ModelConfig::norm_topk)
      .def_readwrite("routed_scale", &ModelConfig::routed_scale)
      .def_readwrite("embedding_multiplier", &ModelConfig::embedding_multiplier)
      .def_readwrite("residual_multiplier", &ModelConfig::residual_multiplier)
      .def_readwrite("logits_scaling", &ModelConfig::logits_scaling)
      .def_readwrite("in_proj_multipliers", &ModelConfig::in_proj_multipliers)
      .def_readwrite("ssm_out_multiplier", &ModelConfig::ssm_out_multiplier)
      .def_readwrite("attn_out_multiplier", &ModelConfig::attn_out_multiplier)
      .def_readwrite("mlp_gate_multiplier", &ModelConfig::mlp_gate_multiplier)
      .def_readwrite("mlp_down_multiplier", &ModelConfig::mlp_down_multiplier)
      .def_readwrite("norm_before_gate", &ModelConfig::norm_before_gate)
      .def_readwrite("shared_blocks", &ModelConfig::shared_blocks)
      .def_readwrite("adapter_rank", &ModelConfig::adapter_rank)
      .def_readwrite("attention_adapters", &ModelConfig::attention_adapters)
      .def_readwrite("mlp_gelu", &ModelConfig::mlp_gelu)
      .def_readwrite("gated_norm_eps", &ModelConfig::gated_norm_eps);

  py::class_<Model, std::shared_ptr<Model>>(m, "Model", "A Mamba model's weights on a backend.")
      .def(py::init([](const ModelConfig& config, const py::dict& weights, int threads, int cuda_device) {
             std::map<std::string, Tensor> tensors;
             for (auto item : weights) {
               const auto name = py::cast<std::string>(item.first);
               tensors[name] = weight_tensor(name, item.second);
             }
             py::gil_scoped_release nogil;
             auto backend = cuda_device >= 0 ? make_cuda_backend(cuda_device) : make_cpu_backend(threads);
             return std::make_shared<Model>(config, tensors, std::move(backend));
           }),
           py::arg("config"), py::arg("weights"), py::arg("threads") = 0, py::arg("cuda_device") = -1,
           "weights: internal name -> float32 array, or Tensor for a big matrix in another weight type (see "
           "mambart.weights); threads <= 0: physical cores; cuda_device >= 0: run on that CUDA device "
           "(RuntimeError/ValueError without one), else on the CPU.")
      .def_property_readonly("weight_bytes", &Model::weight_bytes,
                             "Bytes of every weight held (the embedding and a tied head counted once).")
      .def_property_readonly("step_bytes", &Model::step_bytes, "Weight bytes one decode step reads.")
      .def_property_readonly("config", &Model::config)
      .def_property_readonly("threads", [](const Model& m) { return m.backend().threads(); })
      .def_property_readonly("device", [](const Model& m) { return std::string(m.backend().name()); });

  py::class_<Decoder>(m, "Decoder", "Recurrent state of `batch` sequences; prefill, step and sample.")
      .def(py::init<std::shared_ptr<const Model>, int64_t>(), py::arg("model"), py::arg("batch") = 1)
      .def_property_readonly("batch", &Decoder::batch)
      .def("reset", &Decoder::reset, "Zero the state, forget history and logits.")
      .def(
          "prefill",
          [](Decoder& d, const std::vector<std::vector<int32_t>>& prompts, bool all_logits, bool on_device,
             const py::object& progress) -> py::object {
            MAMBART_CHECK(!on_device || d.model().backend().name() == std::string("cuda"),
                          "[prefill] on_device needs the CUDA backend");
            // Between blocks: Ctrl-C (a pending signal) stops the prefill;
            // after each chunk, progress too, and its exceptions. Raised as they are.
            int64_t reported = 0;
            const PrefillProgress check = [&progress, &reported](int64_t done, int64_t total) {
              py::gil_scoped_acquire gil;
              if (PyErr_CheckSignals() != 0) throw py::error_already_set();
              if (done == reported || progress.is_none()) return;
              reported = done;
              progress(done, total);
            };
            Tensor all;
            {
              py::gil_scoped_release nogil;
              all = d.prefill(prompts, all_logits || on_device, check);
            }
            if (on_device) return device_array(all);
            if (!all_logits) return py::none();
            return host_array(all, d.model().backend());
          },
          py::arg("prompts"), py::arg("all_logits") = false, py::arg("on_device") = false,
          py::arg("progress") = py::none(),
          "Feed one prompt per row. With all_logits (batch 1), return the (len, V) logits of every position "
          "as numpy; with on_device (CUDA), as (__cuda_array_interface__, owner) without a copy. progress(done, "
          "total) is called after each chunk, and its exception stops the prefill there; a signal "
          "(KeyboardInterrupt) stops it between two layers, the state left as after the last whole chunk.")
      .def("step", &Decoder::step, py::arg("tokens"), py::call_guard<py::gil_scoped_release>(),
           "Feed one token to each of the first len(tokens) rows.")
      .def("sample", &Decoder::sample, py::arg("samplers"), py::arg("vocab_limit"),
           py::call_guard<py::gil_scoped_release>(),
           "Choose the next token of the first len(samplers) rows from the current logits.")
      .def(
          "prefill_row",
          [](Decoder& d, int64_t row, const std::vector<int32_t>& tokens) { d.prefill_row(row, tokens); },
          py::arg("row"), py::arg("tokens"), py::call_guard<py::gil_scoped_release>(),
          "Feed tokens to one row from its current state.")
      .def("reset_row", &Decoder::reset_row, py::arg("row"), "Zero one row's state, history and logits.")
      .def("copy_row", &Decoder::copy_row, py::arg("src"), py::arg("dst"),
           py::call_guard<py::gil_scoped_release>(), "Copy row src (state, logits, history) over row dst.")
      .def(
          "export_row",
          [](const Decoder& d, int64_t row) {
            std::string blob;
            {
              py::gil_scoped_release nogil;
              blob = d.export_row(row);
            }
            return py::bytes(blob);
          },
          py::arg("row"), "One row's whole state as an opaque bytes blob.")
      .def(
          "import_row", [](Decoder& d, int64_t row, const py::bytes& blob) { d.import_row(row, std::string(blob)); },
          py::arg("row"), py::arg("blob"), "Put a blob from export_row into a row.")
      .def(
          "row_logits",
          [](const Decoder& d, int64_t row) {
            return to_numpy(d.row_logits(row), {d.model().config().vocab_size});
          },
          py::arg("row"), "One row's current (V,) logits, a copy.")
      .def("row_has_logits", &Decoder::row_has_logits, py::arg("row"))
      .def(
          "logits",
          [](const Decoder& d) { return to_numpy(d.logits(), {d.batch(), d.model().config().vocab_size}); },
          "The current (batch, V) logits, a copy.")
      .def(
          "logits_interface",
          [](const Decoder& d) { return device_array(d.backend_logits())[0]; },
          "__cuda_array_interface__ of the current (batch, V) logits in device memory (CUDA only); valid "
          "until the next prefill / step.")
      .def("history", &Decoder::history, py::arg("row"), "Token ids fed to a row so far.")
      .def_property_readonly("has_logits", &Decoder::has_logits)
      .def(
          "conv_state",
          [](const Decoder& d) {
            const ModelConfig& c = d.model().config();
            return to_numpy(d.conv_state(), {c.mamba_layers(), d.batch(), c.conv_channels(), c.d_conv});
          },
          "Conv state, (mamba_layers, batch, conv_channels, d_conv), a copy (no attention layers).")
      .def(
          "ssm_state",
          [](const Decoder& d) {
            const ModelConfig& c = d.model().config();
            return to_numpy(d.ssm_state(), {c.mamba_layers(), d.batch(), c.ssm_state_size()});
          },
          "SSM state, (mamba_layers, batch, ssm_state_size), a copy (no attention layers).")
      .def(
          "kv_state",
          [](const Decoder& d) {
            std::vector<float> kv = d.kv_state();
            const int64_t n = static_cast<int64_t>(kv.size());
            return to_numpy(std::move(kv), {n});
          },
          "An attention hybrid's KV caches, flat (per attention layer, per row: keys then values of its context), "
          "a copy; empty for a pure Mamba model.")
      .def("context", &Decoder::context, "Tokens in each row's context.")
      .def(
          "restore",
          [](Decoder& d, const F32Array& conv, const F32Array& ssm, const F32Array& logits,
             const std::vector<std::vector<int32_t>>& history, const std::optional<F32Array>& kv,
             const std::vector<bool>& logit_rows) {
            auto vec = [](const F32Array& a) { return std::vector<float>(a.data(), a.data() + a.size()); };
            d.restore(vec(conv), vec(ssm), vec(logits), history, kv ? vec(*kv) : std::vector<float>{}, logit_rows);
          },
          py::arg("conv"), py::arg("ssm"), py::arg("logits"), py::arg("history"), py::arg("kv") = py::none(),
          py::arg("logit_rows") = std::vector<bool>{},
          "Put back a saved state (float32 arrays of the conv_state/ssm_state/logits/kv_state sizes; logits empty "
          "if none; logit_rows: which rows' logits are real, empty for all; kv for attention hybrids).");
}
