// The one request a prepared sandbox's init waits for: where to run, what to exec, with which
// environment. Written by the parent (encode), read by warden-init (header_ok, parse).
//
// Layout: a fixed Header, then `blob_len` bytes holding NUL-terminated strings in this order:
// the working directory, `n_paths` exec candidates, `argc` arguments, `envc` environment
// entries. The reader checks every count against the bytes it got; nothing is trusted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace warden::jail::request {

inline constexpr uint32_t kMagic = 0x31515257;  // "WRQ1"

// Bounds the reader enforces before it allocates: far above what execve(2) accepts (its
// argv + environment limit is a quarter of the stack limit), so they never refuse a command
// the kernel would run, and keep a corrupt header from asking for gigabytes.
inline constexpr uint32_t kMaxStrings = 1u << 20;
inline constexpr uint64_t kMaxBlob = 256ull << 20;

struct Header {
  uint32_t magic;
  uint32_t n_paths;
  uint32_t argc;
  uint32_t envc;
  uint64_t blob_len;
};

struct Parsed {
  const char* cwd = nullptr;
  uint32_t n_paths = 0;
  char** paths = nullptr;  // each array ends with a null pointer
  char** argv = nullptr;
  char** envp = nullptr;
};

inline bool header_ok(const Header& h) {
  return h.magic == kMagic && h.n_paths >= 1 && h.argc >= 1 && h.n_paths < kMaxStrings &&
         h.argc < kMaxStrings && h.envc < kMaxStrings && h.blob_len >= 1 + h.n_paths + h.argc &&
         h.blob_len <= kMaxBlob;
}

// Splits `blob` (blob_len bytes, plus a NUL the caller added after them) into the pointer
// arrays, using `ptrs` (n_paths + argc + envc + 3 slots). False unless the blob holds exactly
// the strings the header announced.
inline bool parse(const Header& h, char* blob, char** ptrs, Parsed* out) {
  char* p = blob;
  char* end = blob + h.blob_len;
  auto next = [&]() -> char* {
    if (p >= end) return nullptr;
    char* s = p;
    while (p < end && *p != '\0') ++p;
    if (p == end) return nullptr;  // not terminated inside the blob
    ++p;
    return s;
  };
  out->cwd = next();
  if (out->cwd == nullptr || out->cwd[0] != '/') return false;
  char** slot = ptrs;
  uint32_t counts[3] = {h.n_paths, h.argc, h.envc};
  char** starts[3];
  for (int k = 0; k < 3; ++k) {
    starts[k] = slot;
    for (uint32_t i = 0; i < counts[k]; ++i) {
      char* s = next();
      if (s == nullptr) return false;
      *slot++ = s;
    }
    *slot++ = nullptr;
  }
  if (p != end) return false;  // trailing bytes
  out->n_paths = h.n_paths;
  out->paths = starts[0];
  out->argv = starts[1];
  out->envp = starts[2];
  return true;
}

// Parent side: the bytes to write, header included.
std::string encode(const std::string& cwd, const std::vector<std::string>& paths,
                   const std::vector<std::string>& argv, const std::vector<std::string>& env);

}  // namespace warden::jail::request
