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

// A name as the policy's sets look it up: its first sixteen bytes, zero-padded, and its length.
// Two names of at most sixteen bytes are equal exactly when their keys are (every name of the
// default policy is that short); longer names are compared in full after the key matches.
struct NameKey {
  uint64_t lo = 0, hi = 0;
  uint32_t len = 0;
  uint32_t hash = 0;
  const char* data = nullptr;  // the whole name, for names longer than sixteen bytes
};

// The hash of a key's words and length. A NameFilter takes its low eleven bits, a NameSet's
// table the bits above them.
inline uint32_t name_hash(uint64_t lo, uint64_t hi, size_t len) {
  uint64_t h = (lo ^ (hi * 0x9E3779B97F4A7C15ULL) ^ len) * 0xC2B2AE3D27D4EB4FULL;
  return static_cast<uint32_t>(h >> 32);
}

// The first sixteen bytes of text[start, start + len), zero-padded, as two little-endian words.
// Reads the sixteen bytes at start in one go when the text has them, which is the case for
// every identifier but those at the very end of a file.
inline void name_words(std::string_view text, size_t start, size_t len, uint64_t& lo, uint64_t& hi) {
  const char* p = text.data() + start;
  if (__builtin_expect(len <= 16 && start + 16 <= text.size(), 1)) {
    __builtin_memcpy(&lo, p, 8);
    __builtin_memcpy(&hi, p + 8, 8);
    // Little-endian: the name's bytes are the low ones; clear what follows the name.
    lo &= len >= 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * len)) - 1;
    hi &= len <= 8 ? 0 : len >= 16 ? ~uint64_t{0} : (uint64_t{1} << (8 * (len - 8))) - 1;
  } else {
    char buf[16] = {};
    if (len) __builtin_memcpy(buf, p, len < 16 ? len : 16);
    __builtin_memcpy(&lo, buf, 8);
    __builtin_memcpy(&hi, buf + 8, 8);
  }
}

// The key of text[start, start + len).
inline NameKey name_key_at(std::string_view text, size_t start, size_t len) {
  uint64_t lo, hi;
  name_words(text, start, len, lo, hi);
  return NameKey{lo, hi, static_cast<uint32_t>(len), name_hash(lo, hi, len), text.data() + start};
}

// The hash of name_key_at(text, start, len) alone, which is all a NameFilter needs.
inline uint32_t name_hash_at(std::string_view text, size_t start, size_t len) {
  uint64_t lo, hi;
  name_words(text, start, len, lo, hi);
  return name_hash(lo, hi, len);
}

// The key of s, which may be any bytes.
inline NameKey name_key(std::string_view s) { return name_key_at(s, 0, s.size()); }

// A 2048-bit Bloom filter of names, one bit per name, by their key's hash. Filters can be
// merged, so that one bit test answers for several sets.
class NameFilter {
 public:
  void add(uint32_t hash) { w_[(hash >> 6) & 31] |= uint64_t{1} << (hash & 63); }
  void add(const NameFilter& other) {
    for (size_t k = 0; k < 32; ++k) w_[k] |= other.w_[k];
  }
  // False: no name of this hash was added. True: one may have been (for forty names, one
  // other name in fifty or so).
  bool may_contain(uint32_t hash) const { return (w_[(hash >> 6) & 31] >> (hash & 63)) & 1; }

 private:
  uint64_t w_[32] = {};
};

// A small set of names: a Bloom filter in front of an open-addressed table of keys kept at most
// a quarter full. The scanner asks it about every identifier, and nearly every answer is no,
// so a miss costs one bit test; the rest is one slot, rarely two.
class NameSet {
 public:
  void insert(std::string name);
  const NameFilter& filter() const { return bloom_; }
  bool contains(const NameKey& k) const {
    if (!bloom_.may_contain(k.hash)) return false;
    for (uint32_t i = (k.hash >> 11) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.len == 0) return false;
      if (s.lo == k.lo && s.hi == k.hi && s.len == k.len && (k.len <= 16 || long_matches(s, k)))
        return true;
    }
  }
  bool contains(std::string_view name) const { return contains(name_key(name)); }
  size_t size() const { return names_.size(); }

 private:
  struct Slot {
    uint64_t lo = 0, hi = 0;
    uint32_t len = 0;    // 0: empty (names are never empty)
    uint32_t index = 0;  // into names_
  };
  bool long_matches(const Slot& s, const NameKey& k) const;
  void place(const Slot& s);

  NameFilter bloom_;
  std::vector<Slot> slots_ = std::vector<Slot>(1);
  uint32_t mask_ = 0;
  std::vector<std::string> names_;
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
