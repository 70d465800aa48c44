#include "scan/fstring.h"

namespace warden::scan {
namespace {

constexpr int kMaxFieldNesting = 200;  // CPython's MAXLEVEL for brackets inside a field

class FieldParser {
 public:
  FieldParser(std::string_view t, size_t end, bool raw, std::vector<Span>& fields,
              std::string& error)
      : t_(t), end_(end), raw_(raw), fields_(fields), error_(error) {}

  size_t steps = 0;

  // Parses literal text and fields from *pos. At level 0 runs to the end of the body; in a
  // format spec (level 1) stops at the closing '}'.
  bool parse(size_t& pos, int level) {
    while (true) {
      if (!literal(pos, level)) return false;
      if (pos >= end_ || t_[pos] == '}') break;
      if (!field(pos, level)) return false;
    }
    if (level != 0 && (pos >= end_ || t_[pos] != '}')) return fail("f-string: expecting '}'");
    return true;
  }

 private:
  bool fail(const char* msg) {
    error_ = msg;
    return false;
  }

  bool literal(size_t& pos, int level) {
    size_t s = pos;
    while (s < end_) {
      ++steps;
      char ch = t_[s++];
      if (!raw_ && ch == '\\' && s < end_) {
        ch = t_[s++];
        if (ch == 'N') {
          // "\N{name}" is an escape, not a field.
          if (s < end_ && t_[s++] == '{') {
            while (s < end_ && t_[s++] != '}') ++steps;
          }
          continue;
        }
      }
      if (ch == '{' || ch == '}') {
        if (level == 0) {
          if (s < end_ && t_[s] == ch) {
            ++s;  // doubled brace: a literal brace
            continue;
          }
          if (ch == '}') return fail("f-string: single '}' is not allowed");
        }
        --s;
        break;
      }
    }
    pos = s;
    return true;
  }

  bool field(size_t& pos, int level) {
    if (level >= 2) return fail("f-string: expressions nested too deeply");
    ++pos;  // '{'
    size_t expr_start = pos;
    char quote = 0;
    int string_type = 0;
    char stack[kMaxFieldNesting];
    int depth = 0;
    while (pos < end_) {
      ++steps;
      char ch = t_[pos];
      if (ch == '\\') return fail("f-string expression part cannot include a backslash");
      if (quote) {
        if (ch == quote) {
          if (string_type == 3) {
            if (pos + 2 < end_ && t_[pos + 1] == ch && t_[pos + 2] == ch) {
              pos += 3;
              quote = 0;
              string_type = 0;
              continue;
            }
          } else {
            ++pos;
            quote = 0;
            string_type = 0;
            continue;
          }
        }
        ++pos;
        continue;
      }
      if (ch == '\'' || ch == '"') {
        if (pos + 2 < end_ && t_[pos + 1] == ch && t_[pos + 2] == ch) {
          string_type = 3;
          pos += 2;
        } else {
          string_type = 1;
        }
        quote = ch;
      } else if (ch == '[' || ch == '{' || ch == '(') {
        if (depth >= kMaxFieldNesting) return fail("f-string: too many nested parenthesis");
        stack[depth++] = ch;
      } else if (ch == '#') {
        return fail("f-string expression part cannot include '#'");
      } else if (depth == 0 && (ch == '!' || ch == ':' || ch == '}' || ch == '=' || ch == '>' || ch == '<')) {
        if (pos + 1 < end_) {
          char next = t_[pos + 1];
          if ((ch == '!' && next == '=') || (ch == '=' && next == '=') ||
              (ch == '<' && next == '=') || (ch == '>' && next == '=')) {
            pos += 2;
            continue;
          }
        }
        if (ch == '>' || ch == '<') {
          ++pos;
          continue;
        }
        break;
      } else if (ch == ']' || ch == '}' || ch == ')') {
        if (depth == 0) return fail("f-string: unmatched closing bracket");
        char open = stack[--depth];
        if (!((open == '(' && ch == ')') || (open == '[' && ch == ']') || (open == '{' && ch == '}')))
          return fail("f-string: closing parenthesis does not match opening parenthesis");
      }
      ++pos;
    }
    if (quote) return fail("f-string: unterminated string");
    if (depth) return fail("f-string: unmatched opening bracket");
    if (pos >= end_) return fail("f-string: expecting '}'");
    bool empty = true;
    for (size_t i = expr_start; i < pos && empty; ++i) {
      char c = t_[i];
      empty = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
    }
    if (empty) return fail("f-string: empty expression not allowed");
    fields_.push_back(Span{expr_start, pos});
    if (t_[pos] == '=') {
      ++pos;
      while (pos < end_ && (t_[pos] == ' ' || t_[pos] == '\t' || t_[pos] == '\n' ||
                            t_[pos] == '\r' || t_[pos] == '\f' || t_[pos] == '\v'))
        ++pos;
      if (pos >= end_) return fail("f-string: expecting '}'");
    }
    if (t_[pos] == '!') {
      ++pos;
      if (pos >= end_) return fail("f-string: expecting '}'");
      char conv = t_[pos++];
      if (conv != 's' && conv != 'r' && conv != 'a')
        return fail("f-string: invalid conversion character: expected 's', 'r', or 'a'");
    }
    if (pos >= end_) return fail("f-string: expecting '}'");
    if (t_[pos] == ':') {
      ++pos;
      if (pos >= end_) return fail("f-string: expecting '}'");
      if (!parse(pos, level + 1)) return false;
    }
    if (pos >= end_ || t_[pos] != '}') return fail("f-string: expecting '}'");
    ++pos;
    return true;
  }

  std::string_view t_;
  size_t end_;
  bool raw_;
  std::vector<Span>& fields_;
  std::string& error_;
};

}  // namespace

bool fstring_fields(std::string_view text, size_t begin, size_t end, bool raw,
                    std::vector<Span>& fields, std::string& error, Stats& stats) {
  FieldParser p(text, end, raw, fields, error);
  size_t pos = begin;
  bool ok = p.parse(pos, 0);
  stats.steps += p.steps;
  return ok;
}

}  // namespace warden::scan
