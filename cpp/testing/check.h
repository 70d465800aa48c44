// Checks for the C++ unit tests (cpp/**/*_test.cc), without a test framework: a failed check
// prints where it is and what it saw, and the test goes on, so that one run shows every
// failure. A test's main() ends with `return warden::testing::finish("name");`.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>

namespace warden::testing {

inline int checks = 0;
inline int failures = 0;

// Value of a failed CHECK_EQ operand as text; a type that cannot be printed shows as "?".
template <class T>
std::string show(const T& v) {
  if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    std::string out = "\"";
    for (char c : std::string_view(v)) {
      if (c == '\n') out += "\\n";
      else if (c == '\t') out += "\\t";
      else if (c == '"' || c == '\\') out += std::string("\\") + c;
      else out += c;
    }
    return out + "\"";
  } else if constexpr (std::is_enum_v<T>) {
    return std::to_string(static_cast<long long>(v));
  } else if constexpr (std::is_arithmetic_v<T>) {
    std::ostringstream os;
    os << +v;  // unary plus: a uint8_t prints as a number, not a character
    return os.str();
  } else if constexpr (requires(std::ostream& os) { os << v; }) {
    std::ostringstream os;
    os << v;
    return os.str();
  } else {
    return "?";
  }
}

inline void fail(const char* file, int line, const char* expr) {
  ++failures;
  std::fprintf(stderr, "FAIL %s:%d: %s\n", file, line, expr);
}

__attribute__((format(printf, 4, 5))) inline void fail(const char* file, int line,
                                                       const char* expr, const char* fmt, ...) {
  ++failures;
  std::fprintf(stderr, "FAIL %s:%d: %s: ", file, line, expr);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "\n");
}

template <class A, class B>
void fail_eq(const char* file, int line, const char* a_expr, const char* b_expr, const A& a,
             const B& b) {
  ++failures;
  std::fprintf(stderr, "FAIL %s:%d: %s == %s\n  left:  %s\n  right: %s\n", file, line, a_expr,
               b_expr, show(a).c_str(), show(b).c_str());
}

// The exit status of a test: 0 when every check passed. A test that made no check at all
// fails too: it would pass whatever the code did.
inline int finish(const char* name) {
  if (checks == 0) {
    std::fprintf(stderr, "FAIL %s: no check was made\n", name);
    return 1;
  }
  std::printf("%s: %d failed checks of %d (%s)\n", failures ? "FAIL" : "OK", failures, checks, name);
  return failures == 0 ? 0 : 1;
}

}  // namespace warden::testing

// CHECK(cond) or CHECK(cond, printf-format, args...): the format says what was being checked.
#define CHECK(cond, ...)                                                              \
  do {                                                                                \
    ++::warden::testing::checks;                                                      \
    if (!(cond)) ::warden::testing::fail(__FILE__, __LINE__, #cond __VA_OPT__(, ) __VA_ARGS__); \
  } while (0)

// CHECK_EQ(a, b): on failure prints both values.
#define CHECK_EQ(a, b)                                                                   \
  do {                                                                                   \
    ++::warden::testing::checks;                                                         \
    const auto& check_a_ = (a);                                                          \
    const auto& check_b_ = (b);                                                          \
    if (!(check_a_ == check_b_))                                                         \
      ::warden::testing::fail_eq(__FILE__, __LINE__, #a, #b, check_a_, check_b_);        \
  } while (0)
