// The tokenizer itself (see lexer.h), written as a template over a sink that is told about each
// token right after it is written. lex() passes a sink that ignores them; the rules pass their
// analyzer, so that most tokens are looked at once, while they are hot, rather than in a second
// pass over the token vector. Included by lexer.cc and rules.cc only.
#pragma once

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "scan/lexer.h"
#include "scan/unicode.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace warden::scan {
// The tokenizer's helpers and the Lexer class: details of lex() and lex_with().
namespace lexing {

struct IdBytes {
  bool v[256] = {};
  constexpr IdBytes() {
    for (int c = 0; c < 256; ++c)
      v[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (c >= '0' && c <= '9') ||
             c >= 0x80;
  }
};
inline constexpr IdBytes kIdBytes;

inline bool is_id_byte(unsigned char c) { return kIdBytes.v[c]; }

// What a byte can start, for the tokenizer's dispatch. The most common operators have a class
// of their own, so that one jump reaches their code; the others go through op().
enum CharClass : uint8_t {
  kChOther, kSpace, kHash, kEol, kBackslash, kIdent, kDigit, kChDot, kQuote,
  kChLpar, kChRpar, kChLsqb, kChRsqb, kChLbrace, kChRbrace, kChComma, kChColon, kChEqual,
};
struct CharClasses {
  uint8_t v[256] = {};
  constexpr CharClasses() {
    for (int c = 0; c < 256; ++c) {
      if (c == ' ' || c == '\t' || c == '\f') v[c] = kSpace;
      else if (c == '#') v[c] = kHash;
      else if (c == '\n' || c == '\r') v[c] = kEol;
      else if (c == '\\') v[c] = kBackslash;
      else if (c >= '0' && c <= '9') v[c] = kDigit;
      else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80) v[c] = kIdent;
      else if (c == '.') v[c] = kChDot;
      else if (c == '\'' || c == '"') v[c] = kQuote;
      else if (c == '(') v[c] = kChLpar;
      else if (c == ')') v[c] = kChRpar;
      else if (c == '[') v[c] = kChLsqb;
      else if (c == ']') v[c] = kChRsqb;
      else if (c == '{') v[c] = kChLbrace;
      else if (c == '}') v[c] = kChRbrace;
      else if (c == ',') v[c] = kChComma;
      else if (c == ':') v[c] = kChColon;
      else if (c == '=') v[c] = kChEqual;
    }
  }
};
inline constexpr CharClasses kClass;

// Index of the first byte at or after i that cannot continue an identifier.
inline size_t identifier_end(const char* t, size_t i, size_t end, bool& non_ascii) {
  unsigned high_seen = 0;  // bytes >= 0x80 met in the identifier
#if defined(__SSE2__)
  const __m128i a = _mm_set1_epi8('a'), z = _mm_set1_epi8(25), zero = _mm_set1_epi8('0'),
                nine = _mm_set1_epi8(9), under = _mm_set1_epi8('_'), low = _mm_set1_epi8(0x20);
  while (i + 16 <= end) {
    __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t + i));
    __m128i l = _mm_sub_epi8(_mm_or_si128(x, low), a);
    __m128i letter = _mm_cmpeq_epi8(_mm_min_epu8(l, z), l);
    __m128i d = _mm_sub_epi8(x, zero);
    __m128i digit = _mm_cmpeq_epi8(_mm_min_epu8(d, nine), d);
    __m128i ok = _mm_or_si128(_mm_or_si128(letter, digit), _mm_cmpeq_epi8(x, under));
    unsigned high = static_cast<unsigned>(_mm_movemask_epi8(x));
    unsigned bits = static_cast<unsigned>(_mm_movemask_epi8(ok)) | high;
    if (bits != 0xFFFF) {
      unsigned n = static_cast<unsigned>(__builtin_ctz(~bits));
      high_seen |= high & ((1u << n) - 1);
      non_ascii |= high_seen != 0;
      return i + n;
    }
    high_seen |= high;
    i += 16;
  }
#endif
  while (i < end && is_id_byte(static_cast<unsigned char>(t[i]))) {
    high_seen |= static_cast<unsigned char>(t[i]) >> 7;
    ++i;
  }
  non_ascii |= high_seen != 0;
  return i;
}

// Index of the first byte in [i, end) equal to a, b, c or d (end if none). Comments and string
// bodies are most of the bytes of real source, so they are skipped sixteen bytes at a time.
inline size_t find_any4(const char* t, size_t i, size_t end, char a, char b, char c, char d) {
#if defined(__SSE2__)
  const __m128i va = _mm_set1_epi8(a), vb = _mm_set1_epi8(b), vc = _mm_set1_epi8(c),
                vd = _mm_set1_epi8(d);
  while (i + 16 <= end) {
    __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t + i));
    __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, va), _mm_cmpeq_epi8(x, vb)),
                             _mm_or_si128(_mm_cmpeq_epi8(x, vc), _mm_cmpeq_epi8(x, vd)));
    int bits = _mm_movemask_epi8(m);
    if (bits) return i + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(bits)));
    i += 16;
  }
#endif
  while (i < end && t[i] != a && t[i] != b && t[i] != c && t[i] != d) ++i;
  return i;
}

// Index of the first byte in [i, end) that is not a space: indentation, four to sixteen spaces
// on most lines.
inline size_t skip_spaces(const char* t, size_t i, size_t end) {
#if defined(__SSE2__)
  const __m128i sp = _mm_set1_epi8(' ');
  while (i + 16 <= end) {
    __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t + i));
    unsigned bits = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(x, sp)));
    if (bits != 0xFFFF) return i + static_cast<size_t>(__builtin_ctz(~bits));
    i += 16;
  }
#endif
  while (i < end && t[i] == ' ') ++i;
  return i;
}

inline constexpr int kMaxIndent = 100;  // CPython's MAXINDENT
inline constexpr size_t kMaxLevel = 200;  // CPython's MAXLEVEL of nested brackets

// Hard keywords, found by a perfect hash of the identifier's bytes read as one little-endian
// word (every keyword has at most eight bytes): identifiers are the most common token, and this
// is one multiply, one load and one compare for each.
constexpr uint64_t word_of(std::string_view k) {
  uint64_t w = 0;
  for (size_t i = 0; i < k.size(); ++i) w |= uint64_t{static_cast<unsigned char>(k[i])} << (8 * i);
  return w;
}

// Found by search; the static_assert below checks that it tells every keyword apart.
inline constexpr uint64_t kKeywordMultiplier = 0x2e22c4926af8a225ULL;
constexpr unsigned keyword_slot(uint64_t w) { return static_cast<unsigned>((w * kKeywordMultiplier) >> 58); }

struct KeywordTable {
  struct Entry {
    uint64_t word = 0;
    Kw kw = kNotKw;
  };
  Entry slot[64] = {};
  bool perfect = true;
  constexpr KeywordTable() {
    constexpr std::pair<std::string_view, Kw> kAll[] = {
        {"False", kKwFalse}, {"None", kKwNone}, {"True", kKwTrue}, {"and", kKwAnd},
        {"as", kKwAs}, {"assert", kKwAssert}, {"async", kKwAsync}, {"await", kKwAwait},
        {"break", kKwBreak}, {"class", kKwClass}, {"continue", kKwContinue}, {"def", kKwDef},
        {"del", kKwDel}, {"elif", kKwElif}, {"else", kKwElse}, {"except", kKwExcept},
        {"finally", kKwFinally}, {"for", kKwFor}, {"from", kKwFrom}, {"global", kKwGlobal},
        {"if", kKwIf}, {"import", kKwImport}, {"in", kKwIn}, {"is", kKwIs},
        {"lambda", kKwLambda}, {"nonlocal", kKwNonlocal}, {"not", kKwNot}, {"or", kKwOr},
        {"pass", kKwPass}, {"raise", kKwRaise}, {"return", kKwReturn}, {"try", kKwTry},
        {"while", kKwWhile}, {"with", kKwWith}, {"yield", kKwYield},
    };
    for (const auto& [name, kw] : kAll) {
      Entry& e = slot[keyword_slot(word_of(name))];
      if (e.kw != kNotKw) perfect = false;
      e.word = word_of(name);
      e.kw = kw;
    }
  }
};
inline constexpr KeywordTable kKeywords;
static_assert(kKeywords.perfect, "kKeywordMultiplier must give every keyword its own slot");

// w: the identifier's bytes as one word, zero above its length (identifiers hold no NUL, so
// the word identifies it among those of at most eight bytes).
inline Kw keyword(uint64_t w) {
  const KeywordTable::Entry& e = kKeywords.slot[keyword_slot(w)];
  return e.word == w ? e.kw : kNotKw;
}

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }
inline bool is_hex(char c) { return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

inline bool valid_prefix(std::string_view p) {
  auto low = [](char c) { return static_cast<char>(c | 0x20); };
  if (p.size() == 1) {
    char c = low(p[0]);
    return c == 'b' || c == 'r' || c == 'u' || c == 'f';
  }
  if (p.size() == 2) {
    char a = low(p[0]), b = low(p[1]);
    if (a > b) std::swap(a, b);
    return (a == 'b' && b == 'r') || (a == 'f' && b == 'r');
  }
  return false;
}

inline uint8_t prefix_flags(std::string_view p) {
  uint8_t f = 0;
  for (char c : p) {
    switch (c | 0x20) {
      case 'f': f |= kStrF; break;
      case 'b': f |= kStrB; break;
      case 'r': f |= kStrR; break;
      case 'u': f |= kStrU; break;
    }
  }
  return f;
}

template <class Sink>
class Lexer {
 public:
  Lexer(std::string_view text, size_t begin, size_t end, bool expr, std::vector<Token>& out,
        LexError& err, Sink& sink)
      : t_(text), p_(begin), end_(end), expr_(expr), out_(out), err_(err), sink_(sink),
        line_start_(begin) {
    // Room for the tokens of typical source (one per six bytes or so) up front; the vector is
    // reused across scans, so this rarely allocates and, as Token is left uninitialised, never
    // writes. emit() grows it when the source is denser than that.
    first_ = static_cast<uint32_t>(out_.size());
    size_t want = first_ + (end - begin) / 4 + 64;
    if (out_.size() < want) out_.resize(want);
    base_ = out_.data();
    count_ = first_;
    room_ = static_cast<uint32_t>(out_.size());
  }

  // Trims the vector to the tokens produced.
  ~Lexer() { out_.resize(count_); }

  size_t produced() const { return count_ - first_; }

  // Kept a function of its own: inlined into its caller, the loop's state no longer stays in
  // registers and a scan takes about 10% more instructions.
  __attribute__((noinline)) bool run() {
    bool atbol = !expr_;
    bool blank = false;
    while (true) {
      if (atbol) {
        atbol = false;
        uint32_t col = 0, altcol = 0;
        {
          size_t q = skip_spaces(t_.data(), p_, end_);
          col = altcol = static_cast<uint32_t>(q - p_);
          p_ = q;
        }
        while (p_ < end_) {
          char c = t_[p_];
          if (c == ' ') {
            ++col, ++altcol;
          } else if (c == '\t') {
            col = (col / 8 + 1) * 8;
            ++altcol;
          } else if (c == '\f') {
            col = altcol = 0;
          } else {
            break;
          }
          ++p_;
        }
        blank = p_ >= end_ || t_[p_] == '#' || t_[p_] == '\n' || t_[p_] == '\r';
        if (!blank && depth_ == 0 && !indentation(col, altcol)) return false;
      }
      if (p_ >= end_) return at_eof();
      auto c = static_cast<unsigned char>(t_[p_]);
      if (c == ' ') {
        // Tokens are mostly one space apart: step over it here rather than by a turn of the
        // dispatch below.
        do ++p_; while (p_ < end_ && t_[p_] == ' ');
        if (p_ >= end_) return at_eof();
        c = static_cast<unsigned char>(t_[p_]);
      }
      switch (kClass.v[c]) {
        case kSpace:
          ++p_;
          while (p_ < end_ && t_[p_] == ' ') ++p_;
          continue;
        case kHash:
          p_ = find_any4(t_.data(), p_, end_, '\n', '\r', '\n', '\r');
          continue;
        case kEol:
          if (!expr_ && !blank && depth_ == 0) emit(Tok::Newline, p_, 1);
          eat_newline();
          atbol = !expr_;
          continue;
        case kBackslash: {
          size_t q = p_ + 1;
          if (q >= end_) return failc(p_, "unexpected end of file after a line continuation");
          if (t_[q] != '\n' && t_[q] != '\r')
            return failc(p_, "unexpected character after line continuation character");
          p_ = q;
          eat_newline();
          if (p_ >= end_) return failc(q, "unexpected end of file after a line continuation");
          continue;
        }
        case kIdent:
          if (!name_or_string()) return false;
          continue;
        case kDigit:
          if (!number()) return false;
          continue;
        case kChDot:
          if (p_ + 1 < end_ && is_digit(t_[p_ + 1])) {
            if (!number()) return false;
          } else if (p_ + 2 < end_ && t_[p_ + 1] == '.' && t_[p_ + 2] == '.') {
            op_token(3, kEllipsis);
          } else {
            op_token(1, kDot);
          }
          continue;
        case kQuote:
          if (!string(p_, 0)) return false;
          continue;
        case kChLpar:
          if (!open(p_, kLpar)) return false;
          continue;
        case kChLsqb:
          if (!open(p_, kLsqb)) return false;
          continue;
        case kChLbrace:
          if (!open(p_, kLbrace)) return false;
          continue;
        case kChRpar:
          if (!close(p_, kRpar, '(')) return false;
          continue;
        case kChRsqb:
          if (!close(p_, kRsqb, '[')) return false;
          continue;
        case kChRbrace:
          if (!close(p_, kRbrace, '{')) return false;
          continue;
        case kChComma:
          op_token(1, kComma);
          continue;
        case kChColon:
          if (p_ + 1 < end_ && t_[p_ + 1] == '=') op_token(2, kWalrus);
          else op_token(1, kColon);
          continue;
        case kChEqual:
          if (p_ + 1 < end_ && t_[p_ + 1] == '=') op_token(2, kOpOther);
          else op_token(1, kEqual);
          continue;
        default:
          break;
      }
      if (!op()) return false;
    }
  }

 private:
  bool fail(size_t pos, std::string msg) {
    err_.line = line_;
    err_.col = static_cast<uint32_t>(pos >= line_start_ ? pos - line_start_ : 0);
    err_.message = std::move(msg);
    return false;
  }
  // Error paths are kept out of line so that the hot paths stay small.
  __attribute__((noinline, cold)) bool failc(size_t pos, const char* msg) {
    return fail(pos, std::string(msg));
  }
  __attribute__((noinline, cold)) bool fail_close(size_t s) {
    if (depth_ == 0) return fail(s, std::string("unmatched '") + t_[s] + "'");
    return fail(s, std::string("closing parenthesis '") + t_[s] +
                       "' does not match opening parenthesis '" + t_[tok(parens_[depth_ - 1]).start] + "'");
  }
  __attribute__((noinline, cold)) bool fail_char(size_t s) {
    char buf[64];
    auto u = static_cast<unsigned char>(t_[s]);
    if (u >= 0x20 && u < 0x7F) std::snprintf(buf, sizeof buf, "invalid character '%c'", t_[s]);
    else std::snprintf(buf, sizeof buf, "invalid non-printable character U+%04X", u);
    return fail(s, buf);
  }

  __attribute__((noinline, cold)) bool fail_literal(size_t pos, const char* prefix, const char* kind) {
    return fail(pos, std::string(prefix) + kind + " literal");
  }
  __attribute__((noinline, cold)) bool fail_ident(size_t pos, uint32_t cp) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "invalid character U+%04X in identifier", cp);
    return fail(pos, buf);
  }
  __attribute__((noinline, cold)) bool fail_atc(uint32_t line, uint32_t col, const char* msg) {
    return fail_at(line, col, msg);
  }

  bool fail_at(uint32_t line, uint32_t col, std::string msg) {
    err_.line = line;
    err_.col = col;
    err_.message = std::move(msg);
    return false;
  }

  __attribute__((always_inline)) void emit(Tok type, size_t start, size_t len, uint8_t sub = 0,
                                          uint8_t prefix = 0, uint32_t pair = 0) {
    emit_at(type, start, len, line_, static_cast<uint32_t>(start - line_start_), sub, prefix, pair);
  }
  // The sink hears of a token once it is complete (its pair included, for a closing bracket).
  __attribute__((always_inline)) void emit_at(Tok type, size_t start, size_t len, uint32_t line,
                                             uint32_t col, uint8_t sub, uint8_t prefix,
                                             uint32_t pair = 0) {
    if (__builtin_expect(count_ == room_, 0)) grow();
    uint32_t i = count_++;
    base_[i] = Token(static_cast<uint32_t>(start), static_cast<uint32_t>(len), line, col, pair,
                     type, sub, prefix);
    sink_.took(type, sub, i);
  }

  __attribute__((noinline)) void grow() {
    out_.resize(2 * out_.size());
    base_ = out_.data();
    room_ = static_cast<uint32_t>(out_.size());
  }

  Token& tok(uint32_t i) { return base_[i]; }
  uint32_t next_index() const { return count_; }

  void eat_newline() {
    if (t_[p_] == '\r' && p_ + 1 < end_ && t_[p_ + 1] == '\n') ++p_;
    ++p_;
    ++line_;
    line_start_ = p_;
  }

  bool indentation(uint32_t col, uint32_t altcol) {
    if (col == ind_[indent_]) {
      if (altcol != alt_[indent_]) return failc(p_, "inconsistent use of tabs and spaces in indentation");
    } else if (col > ind_[indent_]) {
      if (indent_ + 1 >= kMaxIndent) return failc(p_, "too many levels of indentation");
      if (altcol <= alt_[indent_]) return failc(p_, "inconsistent use of tabs and spaces in indentation");
      ++indent_;
      ind_[indent_] = col;
      alt_[indent_] = altcol;
      emit(Tok::Indent, p_, 0);
    } else {
      while (indent_ > 0 && col < ind_[indent_]) {
        --indent_;
        emit(Tok::Dedent, p_, 0);
      }
      if (col != ind_[indent_]) return failc(p_, "unindent does not match any outer indentation level");
      if (altcol != alt_[indent_]) return failc(p_, "inconsistent use of tabs and spaces in indentation");
    }
    return true;
  }

  bool at_eof() {
    if (depth_ != 0 && !expr_) {
      const Token& o = tok(parens_[depth_ - 1]);
      return fail_at(o.line, o.col, "'" + std::string(1, t_[o.start]) + "' was never closed");
    }
    if (expr_) {
      if (depth_ != 0) return failc(p_, "unclosed bracket in f-string expression");
      return true;
    }
    if (count_ != 0 && base_[count_ - 1].type != Tok::Newline) emit(Tok::Newline, p_, 0);
    while (indent_ > 0) {
      --indent_;
      emit(Tok::Dedent, p_, 0);
    }
    emit(Tok::End, p_, 0);
    return true;
  }

  bool name_or_string() {
    size_t s = p_;
    bool non_ascii = false;
    p_ = identifier_end(t_.data(), p_, end_, non_ascii);
    size_t n = p_ - s;
    // A string prefix is one or two letters directly before the quote.
    if (n <= 2 && p_ < end_ && (t_[p_] == '\'' || t_[p_] == '"') && valid_prefix(t_.substr(s, n))) {
      p_ = s;
      return string(s, n);
    }
    if (non_ascii) {
      size_t i = s;
      bool first = true;
      while (i < p_) {
        uint32_t cp;
        size_t k = utf8_decode(t_, i, cp);
        if (!(first ? is_xid_start(cp) : is_xid_continue(cp))) return fail_ident(i, cp);
        first = false;
        i += k;
      }
    }
    uint8_t kw = kNotKw;
    if (!non_ascii && n >= 2 && n <= 8) {
      uint64_t w;
      if (s + 8 <= t_.size()) {
        __builtin_memcpy(&w, t_.data() + s, 8);
        if (n < 8) w &= (uint64_t{1} << (8 * n)) - 1;
      } else {
        w = word_of(t_.substr(s, n));
      }
      kw = keyword(w);
    }
    emit(Tok::Name, s, n, kw, non_ascii ? 1 : 0);
    return true;
  }

  bool string(size_t s, size_t prefix_len) {
    uint8_t flags = prefix_flags(t_.substr(s, prefix_len));
    uint32_t sline = line_;
    auto scol = static_cast<uint32_t>(s - line_start_);
    size_t q = s + prefix_len;
    char quote = t_[q];
    bool triple = q + 2 < end_ && t_[q + 1] == quote && t_[q + 2] == quote;
    size_t i = q + (triple ? 3 : 1);
    const char* unterminated =
        triple ? "unterminated triple-quoted string literal" : "unterminated string literal";
    while (true) {
      i = find_any4(t_.data(), i, end_, quote, '\\', '\n', '\r');
      if (i >= end_) return fail_atc(sline, scol, unterminated);
      char c = t_[i];
      if (c == '\\') {
        ++i;
        if (i >= end_) continue;
        if (t_[i] == '\n' || t_[i] == '\r') {
          p_ = i;
          eat_newline();
          i = p_;
        } else {
          ++i;
        }
        continue;
      }
      if (c == '\n' || c == '\r') {
        if (!triple) return fail_atc(sline, scol, unterminated);
        p_ = i;
        eat_newline();
        i = p_;
        continue;
      }
      if (c == quote) {
        if (!triple) {
          ++i;
          break;
        }
        if (i + 2 < end_ && t_[i + 1] == quote && t_[i + 2] == quote) {
          i += 3;
          break;
        }
      }
      ++i;
    }
    if (flags & kStrB) {
      for (size_t k = q; k < i; ++k)
        if (static_cast<unsigned char>(t_[k]) >= 0x80)
          return fail_atc(sline, scol, "bytes can only contain ASCII literal characters");
    }
    p_ = i;
    emit_at(Tok::String, s, i - s, sline, scol,
            static_cast<uint8_t>(flags | (triple ? kStrTriple : 0)), static_cast<uint8_t>(prefix_len));
    return true;
  }

  bool digit_at(size_t i) const { return i < end_ && is_digit(t_[i]); }

  bool decimal_tail() {
    while (true) {
      while (digit_at(p_)) ++p_;
      if (p_ < end_ && t_[p_] == '_') {
        ++p_;
        if (!digit_at(p_)) return failc(p_, "invalid decimal literal");
      } else {
        return true;
      }
    }
  }

  // CPython's verify_end_of_number(): a number may be followed directly by a keyword that
  // can follow an expression, but by no other identifier character.
  bool end_of_number(const char* kind) {
    if (p_ >= end_ || !is_id_byte(static_cast<unsigned char>(t_[p_]))) return true;
    static const char* const kOk[] = {"and", "else", "for", "if", "in", "is", "not", "or"};
    std::string_view rest = t_.substr(p_, end_ - p_);
    for (const char* k : kOk)
      if (rest.substr(0, std::strlen(k)) == k) return true;
    return fail_literal(p_, "invalid ", kind);
  }

  bool exponent_and_imaginary(size_t s) {
    if (p_ < end_ && (t_[p_] | 0x20) == 'e') {
      size_t q = p_ + 1;
      bool sign = q < end_ && (t_[q] == '+' || t_[q] == '-');
      if (sign) ++q;
      if (digit_at(q)) {
        p_ = q;
        if (!decimal_tail()) return false;
      } else if (sign) {
        return failc(q, "invalid decimal literal");
      } else {
        if (!end_of_number("decimal")) return false;
        emit(Tok::Number, s, p_ - s);
        return true;
      }
    }
    if (p_ < end_ && (t_[p_] | 0x20) == 'j') ++p_;
    if (!end_of_number("decimal")) return false;
    emit(Tok::Number, s, p_ - s);
    return true;
  }

  bool fraction(size_t s) {
    ++p_;  // the '.'
    if (digit_at(p_) && !decimal_tail()) return false;
    return exponent_and_imaginary(s);
  }

  bool radix(size_t s, int base, const char* kind) {
    auto ok = [&](char c) {
      return base == 16 ? is_hex(c) : base == 8 ? (c >= '0' && c <= '7') : (c == '0' || c == '1');
    };
    ++p_;  // the x, o or b
    do {
      if (p_ < end_ && t_[p_] == '_') ++p_;
      if (p_ >= end_ || !ok(t_[p_])) {
        if (p_ < end_ && is_digit(t_[p_])) return fail_literal(p_, "invalid digit in ", kind);
        return fail_literal(p_, "invalid ", kind);
      }
      while (p_ < end_ && ok(t_[p_])) ++p_;
    } while (p_ < end_ && t_[p_] == '_');
    if (p_ < end_ && is_digit(t_[p_])) return fail_literal(p_, "invalid digit in ", kind);
    if (!end_of_number(kind)) return false;
    emit(Tok::Number, s, p_ - s);
    return true;
  }

  __attribute__((noinline)) bool number() {
    size_t s = p_;
    char c = t_[p_];
    if (c == '.') return fraction(s);
    {
      // Most numbers are small decimal integers ("0", "1", "42") followed by an operator, a
      // space or a line end: nothing the general path below would read differently. A '0'
      // followed by more digits is not one of them (leading zeros are refused).
      size_t q = s + 1;
      if (c != '0')
        while (q < end_ && is_digit(t_[q])) ++q;
      if (q >= end_ || (!is_id_byte(static_cast<unsigned char>(t_[q])) && t_[q] != '.')) {
        p_ = q;
        emit(Tok::Number, s, q - s);
        return true;
      }
    }
    if (c == '0') {
      ++p_;
      char x = p_ < end_ ? static_cast<char>(t_[p_] | 0x20) : 0;
      if (x == 'x') return radix(s, 16, "hexadecimal");
      if (x == 'o') return radix(s, 8, "octal");
      if (x == 'b') return radix(s, 2, "binary");
      bool nonzero = false;
      // The zeros after the first, each maybe after an underscore ("0_0" is zero), as
      // CPython's tokenizer reads them; a digit other than zero then is a leading-zero error.
      while (true) {
        if (p_ < end_ && t_[p_] == '_') {
          ++p_;
          if (!digit_at(p_)) return failc(p_, "invalid decimal literal");
        }
        if (p_ >= end_ || t_[p_] != '0') break;
        ++p_;
      }
      if (digit_at(p_)) {
        nonzero = true;
        if (!decimal_tail()) return false;
      }
      if (p_ < end_ && t_[p_] == '.') return fraction(s);
      if (p_ < end_ && ((t_[p_] | 0x20) == 'e' || (t_[p_] | 0x20) == 'j'))
        return exponent_and_imaginary(s);
      if (nonzero)
        return failc(s, "leading zeros in decimal integer literals are not permitted; use an 0o "
                       "prefix for octal integers");
      if (!end_of_number("decimal")) return false;
      emit(Tok::Number, s, p_ - s);
      return true;
    }
    if (!decimal_tail()) return false;
    if (p_ < end_ && t_[p_] == '.') return fraction(s);
    return exponent_and_imaginary(s);
  }

  __attribute__((always_inline)) bool open(size_t s, Op o) {
    if (depth_ >= kMaxLevel) return failc(s, "too many nested parentheses");
    parens_[depth_++] = next_index();
    emit(Tok::Op, s, 1, o);
    ++p_;
    return true;
  }

  __attribute__((always_inline)) bool close(size_t s, Op o, char want) {
    if (depth_ == 0 || t_[tok(parens_[depth_ - 1]).start] != want) return fail_close(s);
    uint32_t oi = parens_[--depth_];
    tok(oi).pair = next_index();
    emit(Tok::Op, s, 1, o, 0, oi);
    ++p_;
    return true;
  }

  __attribute__((always_inline)) void op_token(size_t n, Op o) {
    emit(Tok::Op, p_, n, o);
    p_ += n;
  }

  // Operators other than the brackets, '.', ',', ':' and '=' (the dispatch in run() has those).
  bool op() {
    size_t s = p_;
    auto at = [&](size_t k) -> char { return s + k < end_ ? t_[s + k] : '\0'; };
    char c = t_[s];
    Op o = kOpOther;
    size_t n = 1;
    switch (c) {
      case ';': o = kSemi; break;
      case '~': break;
      case '*':
        if (at(1) == '*') n = at(2) == '=' ? 3 : 2, o = n == 2 ? kDoubleStar : kOpOther;
        else if (at(1) == '=') n = 2;
        else o = kStar;
        break;
      case '@':
        if (at(1) == '=') n = 2;
        else o = kAt;
        break;
      case '-':
        if (at(1) == '>') o = kArrow, n = 2;
        else if (at(1) == '=') n = 2;
        break;
      case '!':
        if (at(1) != '=') return failc(s, "invalid syntax: '!' is not an operator");
        n = 2;
        break;
      case '<':
        if (at(1) == '>') return failc(s, "invalid syntax: '<>' is not an operator in Python 3");
        if (at(1) == '<') n = at(2) == '=' ? 3 : 2;
        else if (at(1) == '=') n = 2;
        break;
      case '>':
        if (at(1) == '>') n = at(2) == '=' ? 3 : 2;
        else if (at(1) == '=') n = 2;
        break;
      case '/':
        if (at(1) == '/') n = at(2) == '=' ? 3 : 2;
        else if (at(1) == '=') n = 2;
        break;
      case '+': case '%': case '&': case '|': case '^':
        if (at(1) == '=') n = 2;
        break;
      default:
        return fail_char(s);
    }
    emit(Tok::Op, s, n, o);
    p_ += n;
    return true;
  }

  std::string_view t_;
  size_t p_, end_;
  bool expr_;
  std::vector<Token>& out_;
  Token* base_;     // out_.data()
  uint32_t first_;  // index of the first token of this call
  uint32_t count_;  // tokens in out_, the index of the next one
  uint32_t room_;   // out_.size()
  LexError& err_;
  Sink& sink_;
  uint32_t line_ = 1;
  size_t line_start_;
  uint32_t parens_[kMaxLevel];  // indices of the open brackets' tokens
  size_t depth_ = 0;
  uint32_t ind_[kMaxIndent + 1] = {0};
  uint32_t alt_[kMaxIndent + 1] = {0};
  int indent_ = 0;
};

}  // namespace lexing

// A sink that ignores the tokens: plain tokenizing.
struct NoSink {
  void took(Tok, uint8_t, uint32_t) {}
};

// lex() of lexer.h, telling sink.took(type, sub, i) about each token i as soon as it is written
// (all tokens before it are written too; out may move between calls, so the sink reads through
// it).
template <class Sink>
bool lex_with(std::string_view text, size_t begin, size_t end, bool expression_mode,
              std::vector<Token>& out, LexError& err, Stats& stats, Sink& sink) {
  lexing::Lexer<Sink> lx(text, begin, end, expression_mode, out, err, sink);
  bool ok = lx.run();
  stats.tokens += lx.produced();
  stats.steps += (end - begin) + lx.produced();
  return ok;
}

}  // namespace warden::scan
