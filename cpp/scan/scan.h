// Public interface of the Python-source scanner. Pure code: no syscalls, no Python API, no
// locks, no exceptions; safe to run on many threads at once with one shared const Policy.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace warden::scan {

// Stable rule ids; the strings are part of warden's public interface (see rule_id()).
enum class Rule : uint8_t {
  ImportForbidden,   // import of a forbidden module, in any form
  ImportDynamic,     // __import__ / import_module with a module name that is not a literal
  BuiltinForbidden,  // a dangerous builtin named (eval, exec, ...)
  NameForbidden,     // a bare dunder name used to escape (__builtins__, __loader__, __spec__)
  AttrForbidden,     // attribute access used for introspection escapes (__class__, f_globals...)
  GetattrDynamic,    // getattr/setattr/delattr/hasattr with an attribute name that is not a literal
  EncodingRefused,   // coding declaration naming a codec that can hide code, or an unknown one
  DecodeError,       // bytes that do not decode in the declared encoding
  SyntaxError,       // input that Python's tokenizer would refuse
};

const char* rule_id(Rule r);

struct Finding {
  Rule rule;
  uint32_t line;  // 1-based
  uint32_t col;   // 0-based, in UTF-8 bytes of the decoded line, as ast reports it
  std::string message;
};

// A small set of ASCII names, bucketed by length: the scanner asks it about every identifier,
// so a lookup must not allocate or hash.
class NameSet {
 public:
  void insert(std::string name);
  bool contains(std::string_view name) const {
    // Most identifiers are rejected here, on length and first character alone.
    if (name.empty()) return false;
    if (name.size() < kBuckets && !((len_mask_ >> name.size()) & 1)) return false;
    auto c = static_cast<unsigned char>(name[0]);
    if (!((first_[c >> 6] >> (c & 63)) & 1)) return false;
    return contains_slow(name);
  }
  size_t size() const { return count_; }

 private:
  bool contains_slow(std::string_view name) const;
  static constexpr size_t kBuckets = 64;
  uint64_t len_mask_ = 0;
  uint64_t first_[4] = {0, 0, 0, 0};
  std::vector<std::string> by_len_[kBuckets];
  std::vector<std::string> long_;
  size_t count_ = 0;
};

// A policy as the scanner uses it. Names are ASCII (the Python side enforces it); module entries
// match a module and its submodules; "*" matches every module. For a module, the longest matching
// entry decides, and an allowed entry wins over a forbidden entry of the same length.
struct Policy {
  std::unordered_set<std::string> forbidden_modules;
  std::unordered_set<std::string> allowed_modules;
  NameSet forbidden_builtins;
  NameSet forbidden_names;
  NameSet forbidden_attributes;
  std::string package;  // package of the scanned code, for relative imports; "" = unknown

  bool module_forbidden(std::string_view module) const;
};

// Work counters, exposed so that tests can check that work grows linearly with input without
// timing anything.
struct Stats {
  uint64_t bytes = 0;   // input bytes
  uint64_t tokens = 0;  // tokens produced, f-string expressions included
  uint64_t steps = 0;   // every unit of work: characters visited, tokens visited, arguments walked
};

enum class InputKind : uint8_t {
  Bytes,  // raw file content: BOM and PEP 263 coding line are honoured
  Text,   // already-decoded text as UTF-8 (a Python str): the coding line is only checked
};

struct Result {
  std::vector<Finding> findings;  // sorted by (line, col, rule), without duplicates
  Stats stats;
};

Result scan_source(std::string_view source, InputKind kind, const Policy& policy);

}  // namespace warden::scan
