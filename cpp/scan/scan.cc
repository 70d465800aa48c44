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
  names_.push_back(std::move(name));
  // At most a quarter full, so that a miss usually ends on the first, empty slot.
  if (names_.size() * 4 > slots_.size()) {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.size() * 2 < 16 ? 16 : old.size() * 2, Slot{});
    mask_ = static_cast<uint32_t>(slots_.size() - 1);
    for (const Slot& s : old)
      if (s.len) place(s);
  }
  NameKey k = name_key(names_.back());
  bloom_.add(k.hash);
  place(Slot{k.lo, k.hi, k.len, static_cast<uint32_t>(names_.size() - 1)});
}

void NameSet::place(const Slot& s) {
  NameKey k = name_key(names_[s.index]);
  uint32_t i = (k.hash >> 11) & mask_;
  while (slots_[i].len) i = (i + 1) & mask_;
  slots_[i] = s;
}

bool NameSet::long_matches(const Slot& s, const NameKey& k) const {
  return std::memcmp(names_[s.index].data(), k.data, k.len) == 0;
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
    ok = lex_and_apply_rules(d.text, tokens, policy, r.findings, err, r.stats);
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
