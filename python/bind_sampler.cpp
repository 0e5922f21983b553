// _core.Sampler: the C++ sampler with numpy arrays in and out. The sampler
// filters in place, so both calls work on a float32 copy of the logits.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <climits>
#include <cstring>
#include <vector>

#include "bindings.h"
#include "check.h"
#include "sampler.h"

namespace {

using mambart::Sampler;
using mambart::SamplingConfig;
using Logits = py::array_t<float, py::array::c_style | py::array::forcecast>;

py::array_t<float> copy_logits(const Logits& logits) {
  MAMBART_CHECK(logits.ndim() == 1, "[sampler] logits must be 1-D, got ", logits.ndim(),
                " dimensions");
  py::array_t<float> out(logits.shape(0));
  if (logits.shape(0) > 0)
    std::memcpy(out.mutable_data(), logits.data(), sizeof(float) * logits.shape(0));
  return out;
}

// Any 1-D integer array (or sequence, or None). Ids that do not fit int32
// become -1, which the sampler ignores like every id outside [0, vocab).
std::vector<int32_t> history_ids(const py::object& history) {
  std::vector<int32_t> ids;
  if (history.is_none()) return ids;
  py::array a = py::array::ensure(history);
  MAMBART_CHECK(a && a.ndim() == 1, "[sampler] history must be a 1-D integer array");
  if (a.size() == 0) return ids;
  const char kind = a.dtype().kind();
  MAMBART_CHECK(kind == 'i' || kind == 'u', "[sampler] history must hold integers, got dtype ",
                std::string(py::str(a.dtype())));
  auto wide = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
  ids.resize(static_cast<size_t>(wide.size()));
  for (size_t j = 0; j < ids.size(); ++j) {
    const int64_t id = wide.data()[j];
    ids[j] = id >= 0 && id <= INT32_MAX ? static_cast<int32_t>(id) : -1;
  }
  return ids;
}

uint64_t to_seed(const py::int_& seed) {
  MAMBART_CHECK(seed >= py::int_(0) && seed < py::int_(1).attr("__lshift__")(64),
                "[sampler] seed must be in [0, 2**64), got ", std::string(py::str(seed)));
  return seed.cast<uint64_t>();
}

}  // namespace

void bind_sampler(py::module_& m) {
  py::class_<Sampler>(m, "Sampler", R"doc(
Token sampler in transformers' order, with OpenAI's presence and frequency
penalties after the repetition penalty: repetition penalty ->
presence/frequency -> temperature -> top-k -> top-p -> min-p -> draw. Every filter is off by default;
temperature 0 is greedy (argmax after the penalty, no randomness used).
The RNG is xoshiro256** seeded from `seed` by splitmix64: the same seed
gives the same draws on every platform.)doc")
      .def(py::init([](double temperature, int64_t top_k, double top_p, double min_p,
                       double repetition_penalty, const py::int_& seed, double presence_penalty,
                       double frequency_penalty) {
             SamplingConfig c;
             c.temperature = temperature;
             c.top_k = top_k;
             c.top_p = top_p;
             c.min_p = min_p;
             c.repetition_penalty = repetition_penalty;
             c.presence_penalty = presence_penalty;
             c.frequency_penalty = frequency_penalty;
             c.seed = to_seed(seed);
             return Sampler(c);
           }),
           py::arg("temperature") = 1.0, py::arg("top_k") = 0, py::arg("top_p") = 1.0,
           py::arg("min_p") = 0.0, py::arg("repetition_penalty") = 1.0, py::arg("seed") = 0,
           py::arg("presence_penalty") = 0.0, py::arg("frequency_penalty") = 0.0,
           "Validates the parameters (ValueError naming the bad one) and seeds the RNG.")
      .def_property_readonly(
          "temperature", [](const Sampler& s) { return s.config().temperature; },
          "0: greedy; otherwise logits are divided by it.")
      .def_property_readonly(
          "top_k", [](const Sampler& s) { return s.config().top_k; },
          "0: off; else keep scores >= the k-th largest.")
      .def_property_readonly(
          "top_p", [](const Sampler& s) { return s.config().top_p; }, "1: off.")
      .def_property_readonly(
          "min_p", [](const Sampler& s) { return s.config().min_p; }, "0: off.")
      .def_property_readonly(
          "repetition_penalty", [](const Sampler& s) { return s.config().repetition_penalty; },
          "1: off.")
      .def_property_readonly(
          "presence_penalty", [](const Sampler& s) { return s.config().presence_penalty; }, "0: off.")
      .def_property_readonly(
          "frequency_penalty", [](const Sampler& s) { return s.config().frequency_penalty; }, "0: off.")
      .def_property(
          "counts", [](const Sampler& s) { return py::dict(py::cast(s.counts())); }, &Sampler::set_counts,
          "Tokens this sampler has chosen -> times (kept only with a presence or frequency penalty); "
          "settable, so that a saved state resumes its penalties.")
      .def_property_readonly(
          "seed", [](const Sampler& s) { return s.config().seed; }, "The seed the RNG started from.")
      .def_property_readonly("greedy", &Sampler::greedy, "True when temperature is 0.")
      .def(
          "process",
          [](const Sampler& s, const Logits& logits, const py::object& history) {
            py::array_t<float> out = copy_logits(logits);
            const std::vector<int32_t> ids = history_ids(history);
            float* data = out.mutable_data();
            const int64_t vocab = out.shape(0);
            {
              py::gil_scoped_release release;
              s.process(data, vocab, ids.data(), static_cast<int64_t>(ids.size()));
            }
            return out;
          },
          py::arg("logits"), py::arg("history") = py::none(),
          "Returns a float32 copy of the 1-D logits with the filters applied (removed entries "
          "-inf). history: ids seen so far, for the repetition penalty. In greedy mode only the "
          "penalty is applied.")
      .def(
          "sample",
          [](Sampler& s, const Logits& logits, const py::object& history) {
            py::array_t<float> scratch = copy_logits(logits);
            const std::vector<int32_t> ids = history_ids(history);
            float* data = scratch.mutable_data();
            const int64_t vocab = scratch.shape(0);
            py::gil_scoped_release release;
            return s.sample(data, vocab, ids.data(), static_cast<int64_t>(ids.size()));
          },
          py::arg("logits"), py::arg("history") = py::none(),
          "Filters a copy of the 1-D logits (the caller's array is not modified) and returns "
          "the argmax (temperature 0) or one draw from the softmax.")
      .def_property(
          "rng_state", [](const Sampler& s) { return py::bytes(s.rng_state()); },
          [](Sampler& s, const py::bytes& state) { s.set_rng_state(state); },
          "The RNG state (32 bytes); assigning it continues that stream.")
      .def(
          "set_rng_state", [](Sampler& s, const py::bytes& state) { s.set_rng_state(state); },
          py::arg("state"), "Restores a state read from rng_state (32 bytes, else ValueError).")
      .def("__repr__", [](const Sampler& s) {
        const SamplingConfig& c = s.config();
        return mambart::detail::concat("Sampler(temperature=", c.temperature, ", top_k=", c.top_k,
                                       ", top_p=", c.top_p, ", min_p=", c.min_p,
                                       ", repetition_penalty=", c.repetition_penalty,
                                       ", presence_penalty=", c.presence_penalty,
                                       ", frequency_penalty=", c.frequency_penalty, ", seed=", c.seed, ")");
      });
}
