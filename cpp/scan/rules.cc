#include "scan/rules.h"

#include <string>

#include "scan/fstring.h"
#include "scan/lexer_impl.h"
#include "scan/unicode.h"

namespace warden::scan {
namespace {

constexpr int kMaxFstringDepth = 8;

enum AsContext : uint8_t { kAsNone, kAsWith, kAsExcept, kAsCase };

// Value of a string-literal argument, as far as the scanner can know it.
enum class Literal { No, Undecidable, Yes };

bool hex_digits(std::string_view s, size_t i, size_t n, uint32_t& v) {
  if (i + n > s.size()) return false;
  v = 0;
  for (size_t k = 0; k < n; ++k) {
    char c = s[i + k];
    uint32_t d;
    if (c >= '0' && c <= '9') d = static_cast<uint32_t>(c - '0');
    else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') d = static_cast<uint32_t>((c | 0x20) - 'a' + 10);
    else return false;
    v = v * 16 + d;
  }
  return true;
}

// Decodes the body of a str literal as Python does. \N{...} needs the Unicode name database,
// which the scanner does not carry: such a literal is undecidable (and reported as computed).
Literal decode_body(std::string_view b, bool raw, std::string& out) {
  for (size_t i = 0; i < b.size(); ++i) {
    char c = b[i];
    if (c == '\r') {
      out.push_back('\n');
      if (i + 1 < b.size() && b[i + 1] == '\n') ++i;
      continue;
    }
    if (c != '\\' || i + 1 >= b.size()) {
      out.push_back(c);
      continue;
    }
    char x = b[++i];
    if (raw) {
      out.push_back('\\');
      if (x == '\r') {
        out.push_back('\n');
        if (i + 1 < b.size() && b[i + 1] == '\n') ++i;
      } else {
        out.push_back(x);
      }
      continue;
    }
    uint32_t v;
    switch (x) {
      case '\n': break;
      case '\r': if (i + 1 < b.size() && b[i + 1] == '\n') ++i; break;
      case '\\': case '\'': case '"': out.push_back(x); break;
      case 'a': out.push_back('\a'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'n': out.push_back('\n'); break;
      case 'r': out.push_back('\r'); break;
      case 't': out.push_back('\t'); break;
      case 'v': out.push_back('\v'); break;
      case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': {
        v = static_cast<uint32_t>(x - '0');
        for (int k = 0; k < 2 && i + 1 < b.size() && b[i + 1] >= '0' && b[i + 1] <= '7'; ++k)
          v = v * 8 + static_cast<uint32_t>(b[++i] - '0');
        utf8_append(out, v);
        break;
      }
      case 'x': case 'u': case 'U': {
        size_t n = x == 'x' ? 2 : x == 'u' ? 4 : 8;
        if (!hex_digits(b, i + 1, n, v) || v > 0x10FFFF) return Literal::Undecidable;
        i += n;
        utf8_append(out, v);
        break;
      }
      case 'N': return Literal::Undecidable;
      default:
        out.push_back('\\');
        out.push_back(x);
    }
  }
  return Literal::Yes;
}

// A stack of at most N entries held in place. Brackets are pushed and popped on nearly every
// line, and a vector's push_back stayed out of line.
template <class T, size_t N>
class FixedStack {
 public:
  bool empty() const { return n_ == 0; }
  size_t size() const { return n_; }
  const T& back() const { return v_[n_ - 1]; }
  bool push_back(const T& x) {
    if (n_ == N) return false;
    v_[n_++] = x;
    return true;
  }
  void pop_back() { --n_; }

 private:
  T v_[N];
  size_t n_ = 0;
};

class Analyzer {
 public:
  Analyzer(std::string_view text, const std::vector<Token>& toks, const Policy& policy,
           std::vector<Finding>& findings, LexError& err, Stats& stats, const Token* at,
           int depth)
      : t_(text), T_(toks), n_(toks.size()), pol_(policy), out_(findings), err_(err),
        stats_(stats), override_(at), depth_(depth), expr_(at != nullptr) {
    end_.type = Tok::End;
    end_.start = end_.len = end_.line = end_.col = end_.pair = 0;
    end_.sub = end_.prefix = 0;
    watched_.add(policy.forbidden_builtins.filter());
    watched_.add(policy.forbidden_names.filter());
    watched_.add(policy.forbidden_attributes.filter());
    for (const char* c : kCallCandidates) watched_.add(name_key(c).hash);
  }

  // Two passes: the tokens are all there.
  bool run() {
    n_ = T_.size();
    done_ = true;
    stats_.steps += n_;
    catch_up(n_);
    return mode_ != kDead;
  }

  // One pass: the lexer calls took() right after writing token i, every earlier token being
  // written too. Most tokens are handled at once, with the type known at the call. A token
  // whose meaning depends on tokens not made yet (an import, a name the policy lists, a call
  // to getattr, 'match' at the start of a line) pauses the analysis; it then catches up with
  // step(), the code of the two-pass run, at the end of the logical line, when the tokens it
  // looks at exist.
  __attribute__((always_inline)) void took(Tok type, uint8_t sub, uint32_t i) {
    if (__builtin_expect(mode_ != kLive, 0) && !resume(type, i)) return;
    bool ok = true;
    switch (type) {
      case Tok::Newline:
        if (i > 0 && is_op(T_[i - 1], kColon)) {
          // A block starts: newline() would refuse the source unless an INDENT comes next,
          // which resume() checks when the next token comes.
          mode_ = kIndentDue;
          reset_statement();
          line_start_ = true;
          return;
        }
        ok = newline(i);
        break;
      case Tok::Indent: ok = indent(i); break;
      case Tok::Dedent: dedent(); break;
      case Tok::End: done_ = true; break;
      case Tok::Name: ok = stream_name(i); break;
      case Tok::Number:
        line_start_ = false;
        ok = atom(T_[i], false);
        break;
      case Tok::String:
        line_start_ = false;
        ok = string(i);
        break;
      case Tok::Op:
        line_start_ = false;
        ok = op(i, sub);
        break;
    }
    if (!ok) mode_ = kDead;
  }

  // After the one-pass run: whether the source is to be refused (err is set).
  bool failed() const { return mode_ == kDead; }
  // After the one-pass run: whether it looked past the tokens made so far (possible only on
  // input Python refuses, such as an import ending in 'as'); its findings are then void and a
  // two-pass run over the finished tokens decides.
  bool needs_two_passes() const { return mode_ == kRerun; }

 private:
  enum Mode : uint8_t {
    kLive,    // handling each token as it comes
    kPaused,  // tokens from next_ on wait for catch_up()
    kDead,    // refused: err_ is set
    kRerun,   // looked past the tokens made so far
    kIndentDue,  // the last token is a NEWLINE after ':', the next must be an INDENT
  };
  static constexpr size_t kLineEnd = SIZE_MAX;

  // Handles tokens [next_, limit), with the tokens up to n_ to look at.
  void catch_up(size_t limit) {
    while (next_ < limit) {
      size_t j = next_++;
      bool ok = step(j);
      if (frontier_) {
        mode_ = kRerun;
        return;
      }
      if (!ok) {
        mode_ = kDead;
        return;
      }
      if (jump_to_ != SIZE_MAX) {
        next_ = jump_to_;
        jump_to_ = SIZE_MAX;
      }
    }
  }

  bool step(size_t i) {
    const Token& tk = T_[i];
    switch (tk.type) {
      case Tok::Newline: return newline(i);
      case Tok::Indent: return indent(i);
      case Tok::Dedent: dedent(); return true;
      case Tok::End: return true;
      case Tok::Name: {
        bool first = line_start_;
        line_start_ = false;
        return name(i, first);
      }
      case Tok::Number:
        line_start_ = false;
        return atom(tk, false);
      case Tok::String:
        line_start_ = false;
        return string(i);
      case Tok::Op:
        line_start_ = false;
        return op(i, tk.sub);
    }
    return true;
  }

  // Token i waits; the analysis resumes at token `at`, or at the next NEWLINE or END if that
  // comes first (kLineEnd: only then).
  bool pause(size_t i, size_t at) {
    mode_ = kPaused;
    next_ = i;
    resume_at_ = at;
    return true;
  }

  // Whether took() is to handle token i itself, after catching up to it.
  __attribute__((noinline)) bool resume(Tok type, uint32_t i) {
    if (mode_ == kIndentDue) {
      if (type == Tok::Indent) {
        mode_ = kLive;
        return true;
      }
      fail(T_[i - 1], "expected an indented block");
      mode_ = kDead;
      return false;
    }
    if (mode_ != kPaused) return false;
    if (i < resume_at_ && type != Tok::Newline && type != Tok::End) return false;
    if (type == Tok::End) done_ = true;
    n_ = static_cast<size_t>(i) + 1;
    catch_up(i);
    if (mode_ != kPaused) return false;
    if (next_ > i) {
      resume_at_ = next_;  // an import statement's tokens were stepped over, this one with them
      return false;
    }
    mode_ = kLive;
    return true;
  }

  bool newline(size_t i) {
    if (i > 0 && is_op(T_[i - 1], kColon) && at(i + 1).type != Tok::Indent)
      return fail(T_[i], "expected an indented block");
    reset_statement();
    line_start_ = true;
    return true;
  }

  bool indent(size_t i) {
    if (i < 2 || T_[i - 1].type != Tok::Newline || !is_op(T_[i - 2], kColon))
      return fail(T_[i], "unexpected indent");
    blocks_.push_back(next_block_match_);
    next_block_match_ = false;
    line_start_ = true;
    return true;
  }

  void dedent() {
    if (!blocks_.empty()) blocks_.pop_back();
    line_start_ = true;
  }

  // name() for took(): the same answers, asked in an order that needs no token after this one;
  // a name that could matter waits for the end of its logical line.
  __attribute__((always_inline)) bool stream_name(uint32_t i) {
    const Token& tk = T_[i];
    if (tk.sub != kNotKw) {
      if (tk.sub == kKwImport || tk.sub == kKwFrom) return pause(i, kLineEnd);
      line_start_ = false;
      return keyword(i);
    }
    if (tk.prefix) return pause(i, kLineEnd);  // non-ASCII: NFKC may make it any name
    if (line_start_ && !expr_ && (tk.len == 5 || tk.len == 4)) {
      std::string_view r = raw(tk);
      if (r == "match") return pause(i, kLineEnd);
      if (r == "case" && !blocks_.empty() && blocks_.back()) {
        line_start_ = false;
        return name(i, true);
      }
    }
    if (watched_.may_contain(name_hash_at(t_, tk.start, tk.len)) &&
        (listed(tk) || call_candidate(raw(tk))))
      return pause(i, kLineEnd);
    line_start_ = false;
    return atom(tk, false);
  }

  // Whether an ASCII name is in one of the policy's sets.
  bool listed(const Token& tk) const {
    NameKey k = name_key_at(t_, tk.start, tk.len);
    return pol_.forbidden_builtins.contains(k) || pol_.forbidden_names.contains(k) ||
           pol_.forbidden_attributes.contains(k);
  }

  // Token i, or END past the last token. In a one-pass run a look past the tokens made so far
  // is noted, so that the run can be redone in two passes.
  const Token& at(size_t i) const {
    if (__builtin_expect(i < n_, 1)) return T_[i];
    if (!done_) frontier_ = true;
    return end_;
  }
  static bool is_op(const Token& t, Op o) { return t.type == Tok::Op && t.sub == o; }
  static bool is_kw(const Token& t, Kw k) { return t.type == Tok::Name && t.sub == k; }
  std::string_view raw(const Token& t) const { return std::string_view(t_.data() + t.start, t.len); }

  bool fail(const Token& at, std::string msg) {
    const Token& p = override_ ? *override_ : at;
    err_.line = p.line;
    err_.col = p.col;
    err_.message = std::move(msg);
    return false;
  }

  void report(Rule r, const Token& at, std::string msg) {
    const Token& p = override_ ? *override_ : at;
    out_.push_back(Finding{r, p.line, p.col, std::move(msg)});
  }

  // The identifier as Python sees it after NFKC; non-ASCII results are returned raw (they can
  // match no policy entry, which are ASCII).
  std::string_view ident(const Token& t, std::string& scratch) const {
    std::string_view r = raw(t);
    if (!t.prefix) return r;
    scratch.clear();
    if (identifier_ascii_nfkc(r, scratch)) return scratch;
    return r;
  }

  void reset_statement() {
    as_ctx_ = kAsNone;
    lambdas_.clear();
    pattern_ = false;
    in_global_ = false;
    def_pending_ = false;
    skip_name_ = SIZE_MAX;
    prev_atom_ = false;
    prev_string_ = false;
  }

  __attribute__((always_inline)) bool atom(const Token& tk, bool is_string) {
    if (prev_atom_ && !(is_string && prev_string_))
      return fail(tk, "invalid syntax: two expressions side by side (Python 2 code?)");
    prev_atom_ = true;
    prev_string_ = is_string;
    return true;
  }

  // A logical line that starts with the soft keyword 'match' and ends with ':'.
  bool match_statement(size_t i) const {
    size_t j = i + 1;
    while (at(j).type != Tok::Newline && at(j).type != Tok::End) ++j;
    return j > i + 2 && is_op(T_[j - 1], kColon);
  }

  bool name(size_t i, bool first) {
    const Token& tk = T_[i];
    if (tk.sub != kNotKw) return keyword(i);
    std::string_view r = raw(tk);
    if (first && !expr_ && r == "match" && match_statement(i)) {
      stats_.steps += 1;
      next_block_match_ = true;
      prev_atom_ = false;
      return true;
    }
    if (first && !expr_ && r == "case" && !blocks_.empty() && blocks_.back()) {
      pattern_ = true;
      as_ctx_ = kAsCase;
      prev_atom_ = false;
      return true;
    }
    if (!atom(tk, false)) return false;
    const Token& next = at(i + 1);
    if (!tk.prefix) {
      // Most identifiers can match nothing: skip the grammar questions.
      NameKey k = name_key_at(t_, tk.start, tk.len);
      if (!pol_.forbidden_builtins.contains(k) && !pol_.forbidden_names.contains(k) &&
          !pol_.forbidden_attributes.contains(k) && !(is_op(next, kLpar) && call_candidate(r)))
        return true;
    }
    const Token& prev = i > 0 ? T_[i - 1] : end_;
    bool is_attr = is_op(prev, kDot);
    bool is_name = false;
    if (i == skip_name_ || in_global_) {
      is_name = false;
    } else if (is_attr) {
      is_name = false;
    } else if (pattern_) {
      is_name = is_op(next, kDot) || is_op(next, kLpar);
    } else if (is_op(next, kEqual) && !brackets_.empty() && T_[brackets_.back().open].sub == kLpar &&
               (is_op(prev, kComma) || is_op(prev, kLpar))) {
      is_name = false;  // keyword argument or parameter with a default (not an annotation)
    } else if (!brackets_.empty() && brackets_.back().def_params && starts_param(i, kLpar)) {
      is_name = false;
    } else if (!lambdas_.empty() && lambdas_.back() == brackets_.size() && starts_param(i, kOpOther)) {
      is_name = false;
    } else {
      is_name = true;
    }
    if (!is_name && !is_attr) return true;
    std::string scratch;
    std::string_view v = ident(tk, scratch);
    if (is_attr) {
      if (pol_.forbidden_attributes.contains(v))
        report(Rule::AttrForbidden, tk,
               "attribute '" + std::string(v) + "' is refused: it reaches interpreter internals "
               "(classes, frames, globals, code) that sandbox escapes walk through");
    } else {
      if (pol_.forbidden_builtins.contains(v))
        report(Rule::BuiltinForbidden, tk,
               "builtin '" + std::string(v) + "' is refused: it runs, compiles or exposes code "
               "and namespaces outside the policy");
      if (pol_.forbidden_names.contains(v))
        report(Rule::NameForbidden, tk,
               "name '" + std::string(v) + "' is refused: it leads to the interpreter's "
               "builtins and import machinery");
    }
    if (is_op(next, kLpar) && !pattern_) call(i, v);
    return true;
  }

  // The calls whose arguments the rules read; call_candidate() tells them apart.
  static constexpr const char* kCallCandidates[] = {"getattr", "setattr", "delattr", "hasattr",
                                                    "__import__", "import_module"};
  static bool call_candidate(std::string_view r) {
    switch (r.size()) {
      case 7: return r == "getattr" || r == "setattr" || r == "delattr" || r == "hasattr";
      case 10: return r == "__import__";
      case 13: return r == "import_module";
      default: return false;
    }
  }

  // Whether the name at i starts a parameter: after the opening bracket (or 'lambda'), a comma,
  // or a '*' / '**' that is itself in such a place.
  bool starts_param(size_t i, Op open) const {
    auto opener = [&](const Token& t) {
      return is_op(t, kComma) || (open == kLpar ? is_op(t, kLpar) : is_kw(t, kKwLambda));
    };
    const Token& p = i > 0 ? T_[i - 1] : end_;
    if (opener(p)) return true;
    if ((is_op(p, kStar) || is_op(p, kDoubleStar)) && i > 1) return opener(T_[i - 2]);
    return false;
  }

  bool keyword(size_t i) {
    const Token& tk = T_[i];
    if (tk.sub == kKwNone || tk.sub == kKwTrue || tk.sub == kKwFalse) return atom(tk, false);
    prev_atom_ = false;
    prev_string_ = false;
    switch (tk.sub) {
      case kKwImport: parse_import(i); break;
      case kKwFrom: parse_from(i); break;
      case kKwDef: skip_name_ = i + 1; def_pending_ = true; break;
      case kKwClass: skip_name_ = i + 1; break;
      case kKwLambda: lambdas_.push_back(brackets_.size()); break;
      case kKwGlobal: case kKwNonlocal: in_global_ = true; break;
      case kKwWith: as_ctx_ = kAsWith; break;
      case kKwExcept: as_ctx_ = kAsExcept; break;
      case kKwAs:
        if (as_ctx_ == kAsExcept || as_ctx_ == kAsCase) skip_name_ = i + 1;
        break;
      case kKwIf:
        if (pattern_ && brackets_.empty()) pattern_ = false;
        break;
      default: break;
    }
    return true;
  }

  __attribute__((always_inline)) bool op(size_t i, uint8_t sub) {
    prev_atom_ = false;
    prev_string_ = false;
    // Most operators (dots, commas, arithmetic) change nothing else.
    constexpr uint32_t kActs = (1u << kLpar) | (1u << kLsqb) | (1u << kLbrace) | (1u << kRpar) |
                               (1u << kRsqb) | (1u << kRbrace) | (1u << kColon) | (1u << kSemi);
    if (!((kActs >> sub) & 1)) return true;
    switch (sub) {
      case kLpar: case kLsqb: case kLbrace:
        // The lexer refuses deeper nesting before this could fail.
        if (!brackets_.push_back(Bracket{static_cast<uint32_t>(i), sub == kLpar && def_pending_}))
          return fail(T_[i], "too many nested parentheses");
        def_pending_ = false;
        break;
      case kRpar: case kRsqb: case kRbrace:
        if (!brackets_.empty()) brackets_.pop_back();
        while (!lambdas_.empty() && lambdas_.back() > brackets_.size()) lambdas_.pop_back();
        break;
      case kColon:
        if (!lambdas_.empty() && lambdas_.back() == brackets_.size()) lambdas_.pop_back();
        else if (pattern_ && brackets_.empty()) pattern_ = false;
        break;
      case kSemi:
        reset_statement();
        break;
      default: break;
    }
    return true;
  }

  // --- imports -----------------------------------------------------------------------------

  // Reads a dotted name at j; returns the index after it.
  size_t dotted(size_t j, std::string& out) const {
    std::string scratch;
    out += ident(T_[j], scratch);
    ++j;
    while (is_op(at(j), kDot) && at(j + 1).type == Tok::Name && at(j + 1).sub == kNotKw) {
      out.push_back('.');
      out += ident(T_[j + 1], scratch);
      j += 2;
    }
    return j;
  }

  void check_module(const std::string& mod, const Token& where) {
    ++stats_.steps;
    if (pol_.module_forbidden(mod))
      report(Rule::ImportForbidden, where,
             "import of module '" + mod + "' is refused by the policy");
  }

  void parse_import(size_t i) {
    size_t j = i + 1;
    while (at(j).type == Tok::Name && at(j).sub == kNotKw) {
      std::string mod;
      size_t first = j;
      j = dotted(j, mod);
      check_module(mod, T_[first]);
      if (is_kw(at(j), kKwAs)) j += 2;
      if (!is_op(at(j), kComma)) break;
      ++j;
    }
    jump(j);
  }

  void parse_from(size_t i) {
    size_t j = i + 1;
    int level = 0;
    while (is_op(at(j), kDot) || is_op(at(j), kEllipsis)) {
      level += is_op(at(j), kDot) ? 1 : 3;
      ++j;
    }
    std::string mod;
    if (at(j).type == Tok::Name && at(j).sub == kNotKw) j = dotted(j, mod);
    if (!is_kw(at(j), kKwImport) || (level == 0 && mod.empty())) return;  // yield from / raise from
    ++j;
    bool resolved = true;
    std::string base = mod;
    if (level > 0) {
      resolved = resolve_relative(level, mod, base);
    }
    if (is_op(at(j), kLpar)) ++j;
    while (true) {
      const Token& a = at(j);
      if (is_op(a, kStar)) {
        if (resolved) check_module(base, a);
        ++j;
      } else if (a.type == Tok::Name && a.sub == kNotKw) {
        std::string scratch;
        if (resolved) check_module(base + "." + std::string(ident(a, scratch)), a);
        ++j;
        if (is_kw(at(j), kKwAs)) j += 2;
      } else {
        break;
      }
      if (!is_op(at(j), kComma)) break;
      ++j;
    }
    if (is_op(at(j), kRpar)) ++j;
    jump(j);
  }

  bool resolve_relative(int level, const std::string& mod, std::string& out) const {
    const std::string& pkg = pol_.package;
    if (pkg.empty()) return false;
    std::string base = pkg;
    for (int k = 1; k < level; ++k) {
      size_t dot = base.rfind('.');
      if (dot == std::string::npos) return false;
      base.resize(dot);
    }
    out = mod.empty() ? base : base + "." + mod;
    return true;
  }

  // Continues the main loop at token j (an import statement's tokens hold no expressions).
  void jump(size_t j) { jump_to_ = j; }

  // --- calls -------------------------------------------------------------------------------

  // Token range of the k-th argument of the call whose '(' is at open.
  bool argument(size_t open, int k, size_t& a, size_t& b) {
    size_t close = T_[open].pair;
    if (close <= open || close >= n_) {
      if (!done_) frontier_ = true;  // not closed yet
      return false;
    }
    size_t j = open + 1, start = j;
    int idx = 0, lam = 0;
    while (j < close) {
      ++stats_.steps;
      const Token& x = T_[j];
      if (x.type == Tok::Op && (x.sub == kLpar || x.sub == kLsqb || x.sub == kLbrace)) {
        j = x.pair + 1;
        continue;
      }
      if (is_kw(x, kKwLambda)) {
        ++lam;
      } else if (is_op(x, kColon) && lam > 0) {
        --lam;
      } else if (is_op(x, kComma) && lam == 0) {
        if (idx == k) {
          a = start, b = j;
          return a < b;
        }
        ++idx;
        start = j + 1;
      }
      ++j;
    }
    if (idx != k) return false;
    a = start, b = close;
    return a < b;
  }

  Literal literal(size_t a, size_t b, std::string& value) {
    while (b - a >= 2 && is_op(T_[a], kLpar) && T_[a].pair == b - 1) ++a, --b;
    if (a >= b) return Literal::No;
    Literal res = Literal::Yes;
    for (size_t j = a; j < b; ++j) {
      const Token& s = T_[j];
      if (s.type != Tok::String || (s.sub & (kStrB | kStrF))) return Literal::No;
    }
    for (size_t j = a; j < b; ++j) {
      const Token& s = T_[j];
      size_t q = (s.sub & kStrTriple) ? 3 : 1;
      std::string_view body = t_.substr(s.start + s.prefix + q, s.len - s.prefix - 2 * q);
      stats_.steps += body.size();
      if (decode_body(body, (s.sub & kStrR) != 0, value) == Literal::Undecidable)
        res = Literal::Undecidable;
    }
    return res;
  }

  void call(size_t i, std::string_view fn) {
    const Token& tk = T_[i];
    size_t open = i + 1;
    if (fn == "__import__" || fn == "import_module") {
      size_t a, b;
      std::string value;
      Literal lit = argument(open, 0, a, b) ? literal(a, b, value) : Literal::No;
      if (lit == Literal::Yes && !value.empty() && value[0] != '.') {
        if (pol_.module_forbidden(value))
          report(Rule::ImportForbidden, tk,
                 std::string(fn) + "() of module '" + value + "' is refused by the policy");
      } else {
        report(Rule::ImportDynamic, tk,
               std::string(fn) + "() with a module name that is not a plain string literal: "
               "what it imports cannot be checked");
      }
    } else if (fn == "getattr" || fn == "setattr" || fn == "delattr" || fn == "hasattr") {
      size_t a, b;
      std::string value;
      Literal lit = argument(open, 1, a, b) ? literal(a, b, value) : Literal::No;
      if (lit == Literal::Yes) {
        if (pol_.forbidden_attributes.contains(value))
          report(Rule::AttrForbidden, tk,
                 std::string(fn) + "() of attribute '" + value + "' is refused: it reaches "
                 "interpreter internals that sandbox escapes walk through");
      } else {
        report(Rule::GetattrDynamic, tk,
               std::string(fn) + "() with an attribute name that is not a plain string "
               "literal: which attribute it reaches cannot be checked");
      }
    }
  }

  // --- strings -----------------------------------------------------------------------------

  bool string(size_t i) {
    const Token& tk = T_[i];
    if (!atom(tk, true)) return false;
    if (i == 0 || T_[i - 1].type != Tok::String) group_ = i;
    else if ((T_[group_].sub ^ tk.sub) & kStrB) return fail(tk, "cannot mix bytes and nonbytes literals");
    if (!(tk.sub & kStrF)) return true;
    if (depth_ >= kMaxFstringDepth) return fail(tk, "f-strings nested too deeply");
    size_t q = (tk.sub & kStrTriple) ? 3 : 1;
    size_t begin = tk.start + tk.prefix + q, end = tk.start + tk.len - q;
    std::vector<Span> fields;
    std::string msg;
    if (!fstring_fields(t_, begin, end, (tk.sub & kStrR) != 0, fields, msg, stats_))
      return fail(tk, msg);
    const Token* at = override_ ? override_ : &T_[group_];
    for (const Span& f : fields) {
      std::vector<Token> sub;
      LexError lerr;
      if (!lex(t_, f.begin, f.end, true, sub, lerr, stats_))
        return fail(tk, "in f-string expression: " + lerr.message);
      Analyzer inner(t_, sub, pol_, out_, err_, stats_, at, depth_ + 1);
      if (!inner.run()) return false;
    }
    return true;
  }

  struct Bracket {
    uint32_t open;
    bool def_params;
  };

  std::string_view t_;
  const std::vector<Token>& T_;
  size_t n_;
  const Policy& pol_;
  std::vector<Finding>& out_;
  LexError& err_;
  Stats& stats_;
  const Token* override_;
  int depth_;
  bool expr_;
  Token end_;

  Mode mode_ = kLive;
  size_t next_ = 0;                 // first token not handled yet (kept by pause() and catch_up())
  size_t resume_at_ = 0;            // see pause()
  bool done_ = false;               // every token is made
  mutable bool frontier_ = false;   // looked past the tokens made so far

  // Every name the policy lists and every call candidate: a name not in it is, for the rules,
  // an atom and nothing more.
  NameFilter watched_;

  FixedStack<Bracket, lexing::kMaxLevel> brackets_;
  std::vector<size_t> lambdas_;
  std::vector<bool> blocks_;
  bool next_block_match_ = false;
  bool line_start_ = true;
  bool pattern_ = false;
  bool in_global_ = false;
  bool def_pending_ = false;
  bool prev_atom_ = false;
  bool prev_string_ = false;
  uint8_t as_ctx_ = kAsNone;
  size_t skip_name_ = SIZE_MAX;
  size_t group_ = 0;
  size_t jump_to_ = SIZE_MAX;
};

}  // namespace

bool apply_rules(std::string_view text, const std::vector<Token>& tokens, const Policy& policy,
                 std::vector<Finding>& findings, LexError& err, Stats& stats) {
  Analyzer a(text, tokens, policy, findings, err, stats, nullptr, 0);
  return a.run();
}

bool lex_and_apply_rules(std::string_view text, std::vector<Token>& tokens, const Policy& policy,
                         std::vector<Finding>& findings, LexError& err, Stats& stats) {
  tokens.clear();
  size_t before = findings.size();
  Analyzer a(text, tokens, policy, findings, err, stats, nullptr, 0);
  if (!lex_with(text, 0, text.size(), false, tokens, err, stats, a)) return false;
  stats.steps += tokens.size();
  if (a.needs_two_passes()) {
    findings.resize(before);
    return apply_rules(text, tokens, policy, findings, err, stats);
  }
  return !a.failed();
}

}  // namespace warden::scan
