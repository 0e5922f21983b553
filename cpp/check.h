// MAMBART_CHECK: the one error helper. Anything a user can influence is
// checked with it; it throws, and pybind11 turns the exception into a
// Python ValueError (mambart::Error derives from std::invalid_argument).
#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

namespace mambart {

struct Error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

// Size arithmetic that a user's numbers reach (shapes, batch, config
// sizes): a * b and a + b of non-negative sizes, or an Error naming `what`
// when the result does not fit int64. One helper, so that no product of
// user sizes can wrap to a small positive number and pass a later check.
inline int64_t size_mul(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
    throw Error(detail::concat("[", what, "] size ", a, " x ", b, " is negative or overflows int64"));
  return r;
}
inline int64_t size_add(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r))
    throw Error(detail::concat("[", what, "] size ", a, " + ", b, " is negative or overflows int64"));
  return r;
}

}  // namespace mambart

#define MAMBART_CHECK(cond, ...)                                   \
  do {                                                             \
    if (!(cond)) throw ::mambart::Error(::mambart::detail::concat(__VA_ARGS__)); \
  } while (0)
