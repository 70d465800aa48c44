#include "scan/scan.h"

#include <algorithm>
#include <cstring>
#include <tuple>

#include "scan/lexer.h"
#include "scan/rules.h"
#include "scan/source_decode.h"

namespace warden::scan {

const char* rule_id(Rule r) {
  switch (r) {
    case Rule::ImportForbidden: return "import-forbidden";
    case Rule::ImportDynamic: return "import-dynamic";
    case Rule::BuiltinForbidden: return "builtin-forbidden";
    case Rule::NameForbidden: return "name-forbidden";
    case Rule::AttrForbidden: return "attr-forbidden";
    case Rule::GetattrDynamic: return "getattr-dynamic";
    case Rule::EncodingRefused: return "encoding-refused";
    case Rule::DecodeError: return "decode-error";
    case Rule::SyntaxError: return "syntax-error";
  }
  return "unknown";
}

void NameSet::insert(std::string name) {
  if (name.empty() || contains(name)) return;
  ++count_;
  if (name.size() < kBuckets) len_mask_ |= uint64_t{1} << name.size();
  auto c = static_cast<unsigned char>(name[0]);
  first_[c >> 6] |= uint64_t{1} << (c & 63);
  if (name.size() < kBuckets) by_len_[name.size()].push_back(std::move(name));
  else long_.push_back(std::move(name));
}

bool NameSet::contains_slow(std::string_view name) const {
  const auto& bucket = name.size() < kBuckets ? by_len_[name.size()] : long_;
  for (const std::string& s : bucket)
    if (s.size() == name.size() && std::memcmp(s.data(), name.data(), name.size()) == 0) return true;
  return false;
}

bool Policy::module_forbidden(std::string_view module) const {
  std::string_view cur = module;
  std::string key;
  while (!cur.empty()) {
    key.assign(cur);
    if (allowed_modules.count(key)) return false;
    if (forbidden_modules.count(key)) return true;
    size_t dot = cur.rfind('.');
    if (dot == std::string_view::npos) break;
    cur = cur.substr(0, dot);
  }
  if (allowed_modules.count("*")) return false;
  return forbidden_modules.count("*") > 0;
}

Result scan_source(std::string_view source, InputKind kind, const Policy& policy) {
  Result r;
  r.stats.bytes = source.size();
  std::string storage;
  Decoded d = decode_source(source, kind, storage, r.stats);
  if (!d.ok) {
    r.findings.push_back(std::move(d.finding));
    return r;
  }
  LexError err;
  bool ok = d.text.size() < (1ULL << 31);
  if (!ok) err = LexError{1, 0, "source larger than 2 GiB"};
  // Reused across calls on the same thread: a fresh multi-megabyte vector per file costs more
  // in page faults than the scan itself.
  thread_local std::vector<Token> tokens;
  tokens.clear();
  if (ok) {
    ok = lex(d.text, 0, d.text.size(), false, tokens, err, r.stats) &&
         apply_rules(d.text, tokens, policy, r.findings, err, r.stats);
  }
  if (tokens.capacity() > (64u << 20) / sizeof(Token)) std::vector<Token>().swap(tokens);
  if (!ok) {
    // Python would not run this source at all; everything else found in it is moot.
    r.findings.clear();
    r.findings.push_back(Finding{Rule::SyntaxError, err.line, err.col,
                                 "Python refuses to parse this source: " + err.message});
    return r;
  }
  auto key = [](const Finding& f) { return std::tie(f.line, f.col, f.rule, f.message); };
  std::sort(r.findings.begin(), r.findings.end(),
            [&](const Finding& a, const Finding& b) { return key(a) < key(b); });
  r.findings.erase(std::unique(r.findings.begin(), r.findings.end(),
                               [&](const Finding& a, const Finding& b) { return key(a) == key(b); }),
                   r.findings.end());
  return r;
}

}  // namespace warden::scan
