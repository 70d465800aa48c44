#include "scan/source_decode.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "scan/unicode.h"
#include "scan/unicode_tables.h"

namespace warden::scan {
namespace {

bool is_ascii_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// CPython tokenizer.c get_coding_spec(): the declaration must be in a comment that is alone on
// its line; the name is [A-Za-z0-9._-]+ after "coding" and ':' or '='.
std::optional<std::string> coding_spec(std::string_view s, size_t size) {
  long lim = static_cast<long>(size) - 6;
  long i = 0;
  for (; i < lim; ++i) {
    if (s[i] == '#') break;
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\f') return std::nullopt;
  }
  for (; i < lim; ++i) {
    if (std::memcmp(s.data() + i, "coding", 6) != 0) continue;
    size_t t = static_cast<size_t>(i) + 6;
    if (s[t] != ':' && s[t] != '=') continue;
    do { ++t; } while (t < s.size() && (s[t] == ' ' || s[t] == '\t'));
    size_t begin = t;
    while (t < s.size() && (is_ascii_alnum(s[t]) || s[t] == '-' || s[t] == '_' || s[t] == '.')) ++t;
    if (begin < t) return std::string(s.substr(begin, t - begin));
  }
  return std::nullopt;
}

// CPython's get_normal_name(): only the first 12 characters are looked at.
std::string normal_name(const std::string& s) {
  std::string buf;
  for (size_t i = 0; i < 12 && i < s.size(); ++i) {
    char c = s[i];
    buf.push_back(c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  if (buf == "utf-8" || buf.rfind("utf-8-", 0) == 0) return "utf-8";
  if (buf == "latin-1" || buf == "iso-8859-1" || buf == "iso-latin-1" ||
      buf.rfind("latin-1-", 0) == 0 || buf.rfind("iso-8859-1-", 0) == 0 ||
      buf.rfind("iso-latin-1-", 0) == 0)
    return "iso-8859-1";
  return s;
}

const char* alias_of(const std::string& name) {
  const auto& a = tables::kCodecAliases;
  auto it = std::lower_bound(std::begin(a), std::end(a), name,
                             [](const tables::Alias& x, const std::string& v) { return v.compare(x.name) > 0; });
  if (it != std::end(a) && name == it->name) return it->codec;
  return nullptr;
}

// What codecs.lookup() would import for this name: lower-case, encodings.normalize_encoding(),
// then the alias table.
std::string codec_module(const std::string& name) {
  std::string norm;
  bool punct = false;
  for (char c : name) {
    char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (is_ascii_alnum(l) || l == '.') {
      if (punct && !norm.empty()) norm.push_back('_');
      norm.push_back(l);
      punct = false;
    } else {
      punct = true;
    }
  }
  if (const char* a = alias_of(norm)) return a;
  std::string dotless = norm;
  std::replace(dotless.begin(), dotless.end(), '.', '_');
  if (const char* a = alias_of(dotless)) return a;
  return norm;
}

const tables::SingleByteCodec* single_byte(const std::string& module) {
  for (const auto& c : tables::kSingleByte)
    if (module == c.name) return &c;
  return nullptr;
}

bool hides_code(const std::string& m) {
  static const char* const kHiding[] = {"utf_7", "unicode_escape", "raw_unicode_escape",
                                        "utf_16", "utf_16_be", "utf_16_le", "utf_32",
                                        "utf_32_be", "utf_32_le", "punycode", "idna",
                                        "unicode_internal", "rot_13", "hex_codec",
                                        "base64_codec", "uu_codec", "zlib_codec", "bz2_codec",
                                        "quopri_codec"};
  for (const char* h : kHiding)
    if (m == h) return true;
  return false;
}

Finding refused(uint32_t line, std::string msg) {
  return Finding{Rule::EncodingRefused, line, 0, std::move(msg)};
}

}  // namespace

void line_col_of(std::string_view text, size_t offset, uint32_t& line, uint32_t& col) {
  line = 1;
  size_t start = 0;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n' || (text[i] == '\r' && (i + 1 >= text.size() || text[i + 1] != '\n'))) {
      ++line;
      start = i + 1;
    }
  }
  col = static_cast<uint32_t>(offset - start);
}

Decoded decode_source(std::string_view raw, InputKind kind, std::string& storage, Stats& stats) {
  Decoded out;
  std::string_view s = raw;
  bool bom = false;
  if (kind == InputKind::Bytes && s.size() >= 3 && std::memcmp(s.data(), "\xEF\xBB\xBF", 3) == 0) {
    bom = true;
    s.remove_prefix(3);
  }

  // Coding declaration: CPython's decode_str() looks at line 1, and at line 2 only when line 1
  // is blank or a comment; a line counts only if it ends with '\n'.
  std::optional<std::string> spec;
  uint32_t spec_line = 0;
  size_t nl0 = s.find('\n');
  if (nl0 != std::string_view::npos) {
    spec = coding_spec(s, nl0);
    spec_line = 1;
    if (!spec) {
      bool comment_only = true;
      for (size_t i = 0; i < nl0; ++i) {
        char c = s[i];
        if (c == '#' || c == '\n' || c == '\r') break;
        if (c != ' ' && c != '\t' && c != '\f') { comment_only = false; break; }
      }
      size_t nl1 = comment_only ? s.find('\n', nl0 + 1) : std::string_view::npos;
      if (nl1 != std::string_view::npos) {
        spec = coding_spec(s.substr(nl0 + 1), nl1 - nl0 - 1);
        spec_line = 2;
      }
    }
  }

  const tables::SingleByteCodec* codec = nullptr;
  if (spec) {
    std::string name = normal_name(*spec);
    if (bom && name != "utf-8") {
      out.finding = refused(spec_line, "coding declaration '" + *spec +
                                           "' contradicts the UTF-8 byte order mark; Python "
                                           "refuses this file: declare utf-8 or drop the mark");
      return out;
    }
    if (name != "utf-8") {
      std::string module = codec_module(name);
      if (module != "utf_8" && module != "utf_8_sig") {
        codec = single_byte(module);
        if (codec == nullptr) {
          std::string why = hides_code(module)
                                ? "can make the bytes of a file decode to code other than what "
                                  "they show"
                                : "is not a codec warden accepts (unknown, or multi-byte)";
          out.finding = refused(spec_line, "coding declaration names '" + *spec + "', which " +
                                               why + "; re-encode the file as UTF-8");
          return out;
        }
      }
    }
  }
  if (kind == InputKind::Text) codec = nullptr;  // a str is already decoded

  stats.steps += s.size();
  if (codec == nullptr) {
    size_t ok = utf8_valid_prefix(s);
    if (ok != s.size()) {
      uint32_t line, col;
      line_col_of(s, ok, line, col);
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned char>(s[ok]));
      out.finding = Finding{Rule::DecodeError, line, col,
                            std::string("byte ") + hex + " is not valid UTF-8" +
                                (spec ? " (declared '" + *spec + "')" : " and no other encoding is declared") +
                                "; fix the bytes or declare the file's real encoding"};
      return out;
    }
    out.ok = true;
    out.text = s;
    return out;
  }
  storage.clear();
  storage.reserve(s.size() + s.size() / 8);
  for (size_t i = 0; i < s.size(); ++i) {
    auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      storage.push_back(static_cast<char>(b));
      continue;
    }
    int32_t cp = codec->map[b - 0x80];
    if (cp < 0) {
      uint32_t line, col;
      line_col_of(s, i, line, col);
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", b);
      out.finding = Finding{Rule::DecodeError, line, col,
                            std::string("byte ") + hex + " is undefined in the declared encoding '" +
                                *spec + "'; fix the bytes or the declaration"};
      return out;
    }
    utf8_append(storage, static_cast<uint32_t>(cp));
  }
  out.ok = true;
  out.text = storage;
  return out;
}

}  // namespace warden::scan
