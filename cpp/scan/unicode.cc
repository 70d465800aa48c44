#include "scan/unicode.h"

#include <algorithm>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "scan/unicode_tables.h"

namespace warden::scan {

size_t utf8_decode(std::string_view s, size_t pos, uint32_t& cp) {
  auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(s[pos + i])); };
  uint32_t c = b(0);
  if (c < 0x80) { cp = c; return 1; }
  if (c < 0xE0) { cp = ((c & 0x1F) << 6) | (b(1) & 0x3F); return 2; }
  if (c < 0xF0) { cp = ((c & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F); return 3; }
  cp = ((c & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  return 4;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t utf8_valid_prefix(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    // Source is mostly ASCII: check sixteen, then eight bytes at a time.
#if defined(__SSE2__)
    while (i + 16 <= n) {
      __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
      if (_mm_movemask_epi8(x)) break;
      i += 16;
    }
#endif
    while (i + 8 <= n) {
      uint64_t w;
      __builtin_memcpy(&w, p + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    unsigned c = p[i];
    if (c < 0x80) { ++i; continue; }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;  // UTF-16 surrogates are not valid UTF-8
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    i += len;
  }
  return n;
}

namespace {
template <size_t N>
bool in_ranges(const tables::CodeRange (&r)[N], uint32_t cp) {
  auto it = std::upper_bound(std::begin(r), std::end(r), cp,
                             [](uint32_t v, const tables::CodeRange& x) { return v < x.lo; });
  if (it == std::begin(r)) return false;
  --it;
  return cp <= it->hi;
}
}  // namespace

bool is_xid_start(uint32_t cp) {
  if (cp < 0x80) return (cp | 0x20) - 'a' < 26 || cp == '_';
  return in_ranges(tables::kXidStart, cp);
}

bool is_xid_continue(uint32_t cp) {
  if (cp < 0x80) return (cp | 0x20) - 'a' < 26 || cp == '_' || cp - '0' < 10;
  return in_ranges(tables::kXidContinue, cp);
}

const char* nfkc_ascii(uint32_t cp) {
  const auto& t = tables::kNfkcAscii;
  auto it = std::lower_bound(std::begin(t), std::end(t), cp,
                             [](const tables::NfkcAscii& x, uint32_t v) { return x.cp < v; });
  if (it == std::end(t) || it->cp != cp) return nullptr;
  return it->ascii;
}

bool identifier_ascii_nfkc(std::string_view raw, std::string& out) {
  size_t i = 0;
  while (i < raw.size()) {
    uint32_t cp;
    i += utf8_decode(raw, i, cp);
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
      continue;
    }
    const char* img = nfkc_ascii(cp);
    if (img == nullptr) return false;
    out += img;
  }
  return true;
}

}  // namespace warden::scan
