// libFuzzer target for the Python-source scanner: any bytes, as a file (BOM, coding line) and
// as already-decoded text, under a policy that exercises every rule. The scanner must return
// findings for everything: no crash, no sanitizer report, no hang, no unbounded memory. And
// the rules applied as the lexer makes the tokens must find exactly what they find in a second
// pass over the finished tokens.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "scan/lexer.h"
#include "scan/rules.h"
#include "scan/scan.h"
#include "scan/source_decode.h"

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

// One pass (what scan_source() does) against two: same verdict, same error, same findings.
void check_one_pass_is_two_passes(std::string_view src) {
  namespace ws = warden::scan;
  std::string storage;
  ws::Stats stats;
  ws::Decoded d = ws::decode_source(src, ws::InputKind::Bytes, storage, stats);
  if (!d.ok) return;
  std::vector<ws::Token> t1, t2;
  std::vector<ws::Finding> f1, f2;
  ws::LexError e1, e2;
  bool ok1 = ws::lex_and_apply_rules(d.text, t1, policy(), f1, e1, stats);
  bool ok2 = ws::lex(d.text, 0, d.text.size(), false, t2, e2, stats) &&
             ws::apply_rules(d.text, t2, policy(), f2, e2, stats);
  if (ok1 != ok2) __builtin_trap();
  if (!ok1) {
    if (e1.line != e2.line || e1.col != e2.col || e1.message != e2.message) __builtin_trap();
    return;
  }
  auto key = [](const ws::Finding& f) { return std::tie(f.line, f.col, f.rule, f.message); };
  auto less = [&](const ws::Finding& a, const ws::Finding& b) { return key(a) < key(b); };
  std::sort(f1.begin(), f1.end(), less);
  std::sort(f2.begin(), f2.end(), less);
  if (f1.size() != f2.size()) __builtin_trap();
  for (size_t i = 0; i < f1.size(); ++i)
    if (key(f1[i]) != key(f2[i])) __builtin_trap();
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
  check_one_pass_is_two_passes(src);
  return 0;
}
