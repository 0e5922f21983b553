// MAMBART_CHECK: the one error helper. Anything a user can influence is
// checked with it; it throws, and pybind11 turns the exception into a
// Python ValueError (mambart::Error derives from std::invalid_argument).
#pragma once
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

}  // namespace mambart

#define MAMBART_CHECK(cond, ...)                                   \
  do {                                                             \
    if (!(cond)) throw ::mambart::Error(::mambart::detail::concat(__VA_ARGS__)); \
  } while (0)
