// libFuzzer target for the Python-source scanner: any bytes, as a file (BOM, coding line) and
// as already-decoded text, under a policy that exercises every rule. The scanner must return
// findings for everything: no crash, no sanitizer report, no hang, no unbounded memory.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "scan/scan.h"

namespace {

const warden::scan::Policy& policy() {
  static const warden::scan::Policy p = [] {
    warden::scan::Policy q;
    for (const char* m : {"os", "sys", "subprocess", "a.b"}) q.forbidden_modules.insert(m);
    q.allowed_modules.insert("os.path");
    for (const char* b : {"eval", "exec", "compile", "__import__", "getattr"}) q.forbidden_builtins.insert(b);
    for (const char* n : {"__builtins__", "__spec__"}) q.forbidden_names.insert(n);
    for (const char* a : {"__class__", "__globals__", "f_back", "mro"}) q.forbidden_attributes.insert(a);
    q.package = "pkg.sub";
    return q;
  }();
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view src(reinterpret_cast<const char*>(data), size);
  auto r = warden::scan::scan_source(src, warden::scan::InputKind::Bytes, policy());
  for (const auto& f : r.findings) {
    // A finding always names a real place and says something.
    if (f.message.empty() || f.line == 0) __builtin_trap();
  }
  // Work is bounded by a constant times the input (the counter is the scanner's own).
  if (r.stats.steps > 64 * (static_cast<uint64_t>(size) + 64)) __builtin_trap();
  warden::scan::scan_source(src, warden::scan::InputKind::Text, policy());
  return 0;
}
