// Unit test of the tokenizer (lexer.h): the tokens, their positions and sub-kinds, bracket
// pairing, indentation, and the inputs CPython's tokenizer refuses. Expected positions are
// those of CPython 3.11's tokenize for the same source (columns in bytes).
#include "scan/lexer.h"

#include <string>
#include <string_view>
#include <vector>

#include "testing/check.h"

namespace warden::scan {
namespace {

const char* type_name(Tok t) {
  switch (t) {
    case Tok::Name: return "Name";
    case Tok::Number: return "Number";
    case Tok::String: return "String";
    case Tok::Op: return "Op";
    case Tok::Newline: return "Newline";
    case Tok::Indent: return "Indent";
    case Tok::Dedent: return "Dedent";
    case Tok::End: return "End";
  }
  return "?";
}

struct Lexed {
  bool ok;
  std::vector<Token> tokens;
  LexError err;
  Stats stats;
};

Lexed lex_all(std::string_view text) {
  Lexed r;
  r.ok = lex(text, 0, text.size(), false, r.tokens, r.err, r.stats);
  return r;
}

// The tokens as one line of text: "Name:x@1:0 Op:=@1:2 ... Newline@1:5 End". Tokens without
// text (INDENT, DEDENT, END, and the NEWLINE made at the end of a file) show their type only.
std::string describe(std::string_view text, const std::vector<Token>& tokens) {
  std::string out;
  for (const Token& t : tokens) {
    if (!out.empty()) out += ' ';
    out += type_name(t.type);
    if (t.len == 0) continue;
    if (t.type != Tok::Newline) out += ":" + std::string(text.substr(t.start, t.len));
    out += "@" + std::to_string(t.line) + ":" + std::to_string(t.col);
  }
  return out;
}

std::string tokens_of(std::string_view text) {
  Lexed r = lex_all(text);
  if (!r.ok) return "error: " + r.err.message;
  return describe(text, r.tokens);
}

// The refusal of text: "line:col: message", or "accepted".
std::string error_of(std::string_view text) {
  Lexed r = lex_all(text);
  if (r.ok) return "accepted";
  return std::to_string(r.err.line) + ":" + std::to_string(r.err.col) + ": " + r.err.message;
}

void test_statement() {
  CHECK_EQ(tokens_of("x = 1\n"), "Name:x@1:0 Op:=@1:2 Number:1@1:4 Newline@1:5 End");
  // No newline at the end of the file: the NEWLINE is made up, as tokenize does.
  CHECK_EQ(tokens_of("x"), "Name:x@1:0 Newline End");
  CHECK_EQ(tokens_of(""), "End");
  CHECK_EQ(tokens_of("\n\n"), "End");
  // Blank and comment-only lines make no token at all, whatever their indentation.
  CHECK_EQ(tokens_of("# c\n\n  # d\nx  # e\n"), "Name:x@4:0 Newline@4:6 End");
}

void test_indentation() {
  CHECK_EQ(tokens_of("if x:\n    y\n    if z:\n        w\nv\n"),
           "Name:if@1:0 Name:x@1:3 Op::@1:4 Newline@1:5 Indent Name:y@2:4 Newline@2:5 "
           "Name:if@3:4 Name:z@3:7 Op::@3:8 Newline@3:9 Indent Name:w@4:8 Newline@4:9 "
           "Dedent Dedent Name:v@5:0 Newline@5:1 End");
  // Open blocks are closed at the end of the file.
  CHECK_EQ(tokens_of("if x:\n  y"),
           "Name:if@1:0 Name:x@1:3 Op::@1:4 Newline@1:5 Indent Name:y@2:2 Newline Dedent End");
  // A tab goes to the next multiple of eight, as CPython counts it.
  CHECK_EQ(tokens_of("if x:\n\ty\n\tz\n"),
           "Name:if@1:0 Name:x@1:3 Op::@1:4 Newline@1:5 Indent Name:y@2:1 Newline@2:2 "
           "Name:z@3:1 Newline@3:2 Dedent End");
  // Inside brackets, line ends and indentation are not tokens.
  CHECK_EQ(tokens_of("f(a,\n  [b])\n"),
           "Name:f@1:0 Op:(@1:1 Name:a@1:2 Op:,@1:3 Op:[@2:2 Name:b@2:3 Op:]@2:4 Op:)@2:5 "
           "Newline@2:6 End");
  // A backslash joins lines.
  CHECK_EQ(tokens_of("x = 1 + \\\n    2\n"),
           "Name:x@1:0 Op:=@1:2 Number:1@1:4 Op:+@1:6 Number:2@2:4 Newline@2:5 End");
}

void test_indentation_errors() {
  CHECK_EQ(error_of("if x:\n    a\n  b\n"),
           "3:2: unindent does not match any outer indentation level");
  CHECK_EQ(error_of("if x:\n\ta\n        b\n"),
           "3:8: inconsistent use of tabs and spaces in indentation");
  // CPython's MAXINDENT: 100 levels, the outermost included.
  std::string deep;
  for (int i = 0; i < 99; ++i) deep += std::string(i, ' ') + "if x:\n";
  deep += std::string(99, ' ') + "y\n";
  CHECK_EQ(error_of(deep), "accepted");
  std::string deeper = deep + std::string(99, ' ') + "if x:\n" + std::string(100, ' ') + "y\n";
  CHECK_EQ(error_of(deeper), "102:100: too many levels of indentation");
}

void test_line_ends() {
  CHECK_EQ(tokens_of("a\r\nb\r\n"), "Name:a@1:0 Newline@1:1 Name:b@2:0 Newline@2:1 End");
  CHECK_EQ(tokens_of("a\rb\r"), "Name:a@1:0 Newline@1:1 Name:b@2:0 Newline@2:1 End");
  CHECK_EQ(error_of("a \\ b\n"), "1:2: unexpected character after line continuation character");
  CHECK_EQ(error_of("x = \\"), "1:4: unexpected end of file after a line continuation");
}

void test_keywords() {
  const char* const hard[] = {
      "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class",
      "continue", "def", "del", "elif", "else", "except", "finally", "for", "from", "global",
      "if", "import", "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise",
      "return", "try", "while", "with", "yield"};
  for (const char* k : hard) {
    Lexed r = lex_all(k);
    CHECK(r.ok && r.tokens[0].type == Tok::Name && r.tokens[0].sub != kNotKw, "%s", k);
  }
  CHECK_EQ(lex_all("import").tokens[0].sub, kKwImport);
  CHECK_EQ(lex_all("None").tokens[0].sub, kKwNone);
  // Soft keywords, builtins, and names that a keyword starts, ends or differs from by case.
  for (const char* n : {"match", "case", "_", "type", "print", "iff", "nonlocals", "Import",
                        "IF", "elsE", "x_if", "yieldx", "asyncio", "i", "continue_"}) {
    Lexed r = lex_all(n);
    CHECK(r.ok && r.tokens[0].type == Tok::Name && r.tokens[0].sub == kNotKw, "%s", n);
    CHECK_EQ(r.tokens[0].len, std::string_view(n).size());
  }
  // The keyword's hash reads eight bytes: a keyword at the very end of the text is found too.
  std::string at_end = "x = 1\nif";
  Lexed r = lex_all(std::string_view(at_end));
  CHECK(r.ok && r.tokens[4].sub == kKwIf, "keyword at the end of the text");
}

void test_identifiers() {
  // Columns count bytes, as ast's col_offset does: 'é' is two.
  CHECK_EQ(tokens_of("é = 1\n"), "Name:é@1:0 Op:=@1:3 Number:1@1:5 Newline@1:6 End");
  Lexed r = lex_all("é = 1\n");
  CHECK_EQ(r.tokens[0].prefix, 1);  // non-ASCII: the rules normalize it (NFKC)
  CHECK_EQ(lex_all("e = 1\n").tokens[0].prefix, 0);
  CHECK_EQ(error_of("a€b = 1\n"), "1:1: invalid character U+20AC in identifier");
  CHECK_EQ(error_of("²x = 1\n"), "1:0: invalid character U+00B2 in identifier");
  // Identifiers longer than the sixteen bytes read at once.
  std::string longname(40, 'a');
  CHECK_EQ(tokens_of(longname + "b.c\n"),
           "Name:" + longname + "b@1:0 Op:.@1:41 Name:c@1:42 Newline@1:43 End");
}

void test_strings() {
  struct Case {
    const char* src;
    uint8_t flags;
    uint8_t prefix;
  } cases[] = {
      {"'a'", 0, 0},           {"\"a\"", 0, 0},         {"b'a'", kStrB, 1},
      {"B'a'", kStrB, 1},      {"r'a'", kStrR, 1},      {"u'a'", kStrU, 1},
      {"f'a'", kStrF, 1},      {"rb'a'", kStrB | kStrR, 2}, {"Br'a'", kStrB | kStrR, 2},
      {"fR'a'", kStrF | kStrR, 2}, {"'''a'''", kStrTriple, 0},
      {"rf\"\"\"a\"\"\"", kStrF | kStrR | kStrTriple, 2},
  };
  for (const Case& c : cases) {
    Lexed r = lex_all(c.src);
    CHECK(r.ok, "%s", c.src);
    if (!r.ok) continue;
    CHECK(r.tokens[0].type == Tok::String, "%s", c.src);
    CHECK(r.tokens[0].sub == c.flags, "%s: flags %d", c.src, r.tokens[0].sub);
    CHECK(r.tokens[0].prefix == c.prefix, "%s: prefix %d", c.src, r.tokens[0].prefix);
    CHECK(r.tokens[0].len == std::string_view(c.src).size(), "%s: whole literal", c.src);
  }
  // Not a prefix: a name, then a string (Python's parser, not its tokenizer, refuses these).
  CHECK_EQ(tokens_of("ub'a'\n"), "Name:ub@1:0 String:'a'@1:2 Newline@1:5 End");
  CHECK_EQ(tokens_of("bb'a'\n"), "Name:bb@1:0 String:'a'@1:2 Newline@1:5 End");
  // Escaped quotes and a backslash-newline inside a one-line string.
  CHECK_EQ(tokens_of("'a\\'b' \"c\\\"\"\n"), "String:'a\\'b'@1:0 String:\"c\\\"\"@1:7 Newline@1:12 End");
  CHECK_EQ(tokens_of("'a\\\nb' + c\n"), "String:'a\\\nb'@1:0 Op:+@2:3 Name:c@2:5 Newline@2:6 End");
  // A triple-quoted string keeps its start; the tokens after it are on its last line.
  CHECK_EQ(tokens_of("s = '''a\nb''' + c\n"),
           "Name:s@1:0 Op:=@1:2 String:'''a\nb'''@1:4 Op:+@2:5 Name:c@2:7 Newline@2:8 End");
  // A quote of the other kind, and fewer than three quotes, do not end a triple-quoted string.
  CHECK_EQ(tokens_of("'''a\"\"\"''b'''\n"), "String:'''a\"\"\"''b'''@1:0 Newline@1:13 End");
}

void test_string_errors() {
  CHECK_EQ(error_of("x = 'abc\n"), "1:4: unterminated string literal");
  CHECK_EQ(error_of("x = 'abc"), "1:4: unterminated string literal");
  CHECK_EQ(error_of("x = 1\ny = '''abc\n\n"), "2:4: unterminated triple-quoted string literal");
  CHECK_EQ(error_of("b'é'\n"), "1:0: bytes can only contain ASCII literal characters");
  CHECK_EQ(error_of("rb'''\n\xff'''\n"), "1:0: bytes can only contain ASCII literal characters");
  CHECK_EQ(error_of("'é'\n"), "accepted");
}

void test_numbers() {
  for (const char* ok : {"0", "00", "0_0", "7", "1_000", "0x_ff", "0XFF", "0o17", "0b1010",
                         "0b_1", "1.5", ".5", "1.", "1e10", "1E-5", "1e+5", "1j", "1.5J", ".5j",
                         "0.0", "0e0", "00.5", "1_0.0_1e1_0", "0_0", "00_0", "0_0_0", "0_0.5",
                         "0_0j"}) {
    std::string src = std::string(ok) + "\n";
    Lexed r = lex_all(src);
    CHECK(r.ok, "%s refused: %s", ok, r.err.message.c_str());
    if (!r.ok) continue;
    CHECK(r.tokens[0].type == Tok::Number && r.tokens[0].len == std::string_view(ok).size(),
          "%s is not one number", ok);
  }
  // A keyword that may follow an expression may follow a number directly.
  CHECK_EQ(tokens_of("1if x else 2\n"),
           "Number:1@1:0 Name:if@1:1 Name:x@1:4 Name:else@1:6 Number:2@1:11 Newline@1:12 End");
  CHECK_EQ(tokens_of("x[1:2]\n"),
           "Name:x@1:0 Op:[@1:1 Number:1@1:2 Op::@1:3 Number:2@1:4 Op:]@1:5 Newline@1:6 End");
  CHECK_EQ(tokens_of("1..real\n"), "Number:1.@1:0 Op:.@1:2 Name:real@1:3 Newline@1:7 End");

  CHECK_EQ(error_of("012\n"),
           "1:0: leading zeros in decimal integer literals are not permitted; use an 0o prefix "
           "for octal integers");
  CHECK_EQ(error_of("1__0\n"), "1:2: invalid decimal literal");
  CHECK_EQ(error_of("1_\n"), "1:2: invalid decimal literal");
  CHECK_EQ(error_of("1e+\n"), "1:3: invalid decimal literal");
  CHECK_EQ(error_of("1abc\n"), "1:1: invalid decimal literal");
  CHECK_EQ(error_of("0x\n"), "1:2: invalid hexadecimal literal");
  CHECK_EQ(error_of("0xg\n"), "1:2: invalid hexadecimal literal");
  CHECK_EQ(error_of("0b2\n"), "1:2: invalid digit in binary literal");
  CHECK_EQ(error_of("0o8\n"), "1:2: invalid digit in octal literal");
  CHECK_EQ(error_of("0o1_\n"), "1:4: invalid octal literal");
  CHECK_EQ(error_of("0_1\n"),
           "1:0: leading zeros in decimal integer literals are not permitted; use an 0o prefix "
           "for octal integers");
  CHECK_EQ(error_of("0__0\n"), "1:2: invalid decimal literal");
  CHECK_EQ(error_of("0_\n"), "1:2: invalid decimal literal");
}

void test_operators() {
  struct Case {
    const char* src;
    Op sub;
  } cases[] = {
      {"(", kLpar},   {")", kRpar},      {"[", kLsqb},     {"]", kRsqb},    {"{", kLbrace},
      {"}", kRbrace}, {".", kDot},       {",", kComma},    {":", kColon},   {";", kSemi},
      {"=", kEqual},  {"*", kStar},      {"**", kDoubleStar}, {"@", kAt}, {":=", kWalrus},
      {"->", kArrow}, {"...", kEllipsis}, {"==", kOpOther}, {"!=", kOpOther}, {"**=", kOpOther},
      {"//=", kOpOther}, {">>=", kOpOther}, {"<<=", kOpOther}, {"@=", kOpOther},
      {"-=", kOpOther}, {"<=", kOpOther}, {"~", kOpOther}, {"%", kOpOther}, {"^=", kOpOther},
  };
  for (const Case& c : cases) {
    bool opens = c.sub == kLpar || c.sub == kLsqb || c.sub == kLbrace;
    bool closes = c.sub == kRpar || c.sub == kRsqb || c.sub == kRbrace;
    if (closes) continue;  // checked with their opening bracket
    if (opens) {
      // The closing bracket's Op follows its opening one's in the enum.
      const char* close = c.sub == kLpar ? ")" : c.sub == kLsqb ? "]" : "}";
      std::string src = std::string("x") + c.src + "1" + close;
      Lexed r = lex_all(src);
      CHECK(r.ok && r.tokens[1].sub == c.sub && r.tokens[3].sub == c.sub + 1, "%s", src.c_str());
      continue;
    }
    std::string src = std::string("a ") + c.src + " b\n";
    Lexed r = lex_all(src);
    CHECK(r.ok, "%s refused: %s", c.src, r.err.message.c_str());
    if (!r.ok) continue;
    CHECK(r.tokens[1].type == Tok::Op && r.tokens[1].sub == c.sub, "%s: sub %d", c.src,
          r.tokens[1].sub);
    CHECK(r.tokens[1].len == std::string_view(c.src).size(), "%s: length %u", c.src,
          r.tokens[1].len);
  }
  CHECK_EQ(error_of("a!b\n"), "1:1: invalid syntax: '!' is not an operator");
  CHECK_EQ(error_of("a<>b\n"), "1:1: invalid syntax: '<>' is not an operator in Python 3");
  CHECK_EQ(error_of("a$b\n"), "1:1: invalid character '$'");
  CHECK_EQ(error_of("a?\n"), "1:1: invalid character '?'");
  CHECK_EQ(error_of("\x01\n"), "1:0: invalid non-printable character U+0001");
}

void test_brackets() {
  Lexed r = lex_all("f(a, [b, {c: d}])\n");
  CHECK(r.ok, "%s", r.err.message.c_str());
  // f ( a , [ b , { c : d } ] ) NEWLINE END
  // 0 1 2 3 4 5 6 7 8 9 10 11 12 13
  CHECK_EQ(r.tokens.size(), 16u);
  CHECK_EQ(r.tokens[1].pair, 13u);
  CHECK_EQ(r.tokens[13].pair, 1u);
  CHECK_EQ(r.tokens[4].pair, 12u);
  CHECK_EQ(r.tokens[12].pair, 4u);
  CHECK_EQ(r.tokens[7].pair, 11u);
  CHECK_EQ(r.tokens[11].pair, 7u);

  CHECK_EQ(error_of(")\n"), "1:0: unmatched ')'");
  CHECK_EQ(error_of("(]\n"), "1:1: closing parenthesis ']' does not match opening parenthesis '('");
  CHECK_EQ(error_of("x = (\n\n"), "1:4: '(' was never closed");
  CHECK_EQ(error_of("[1,\n (2,\n"), "2:1: '(' was never closed");
  // CPython's MAXLEVEL: 200 open brackets.
  std::string deep = std::string(200, '(') + std::string(200, ')') + "\n";
  CHECK_EQ(error_of(deep), "accepted");
  std::string deeper = std::string(201, '[') + std::string(201, ']') + "\n";
  CHECK_EQ(error_of(deeper), "1:200: too many nested parentheses");
}

void test_expression_mode() {
  // The inside of an f-string's replacement field, within a larger text: as if in brackets.
  std::string text = "f'{a +\n b}'";
  size_t begin = 3, end = text.size() - 2;
  std::vector<Token> toks;
  LexError err;
  Stats stats;
  bool ok = lex(text, begin, end, true, toks, err, stats);
  CHECK(ok, "%s", err.message.c_str());
  CHECK_EQ(describe(text, toks), "Name:a@1:0 Op:+@1:2 Name:b@2:1");
  CHECK_EQ(toks[0].start, 3u);  // offsets are in the whole text

  toks.clear();
  std::string open = "(a";
  CHECK(!lex(open, 0, open.size(), true, toks, err, stats), "an open bracket is accepted");
  CHECK_EQ(err.message, "unclosed bracket in f-string expression");
}

void test_growth_and_stats() {
  // Denser than the room the lexer sets aside (one token per four bytes): it must grow.
  std::string dense;
  for (int i = 0; i < 5000; ++i) dense += "a,";
  dense += "a\n";
  Lexed r = lex_all(dense);
  CHECK(r.ok, "%s", r.err.message.c_str());
  CHECK_EQ(r.tokens.size(), 10003u);  // 5001 names, 5000 commas, NEWLINE, END
  bool all = true;
  for (size_t i = 0; i < 10001; ++i) {
    const Token& t = r.tokens[i];
    all = all && t.start == i && t.len == 1 && t.col == i &&
          t.type == (i % 2 ? Tok::Op : Tok::Name);
  }
  CHECK(all, "a token is wrong after the vector grew");
  CHECK_EQ(r.stats.tokens, 10003u);
  CHECK(r.stats.steps >= dense.size() + 10003, "steps %llu",
        static_cast<unsigned long long>(r.stats.steps));
}

}  // namespace
}  // namespace warden::scan

int main() {
  using namespace warden::scan;
  test_statement();
  test_indentation();
  test_indentation_errors();
  test_line_ends();
  test_keywords();
  test_identifiers();
  test_strings();
  test_string_errors();
  test_numbers();
  test_operators();
  test_brackets();
  test_expression_mode();
  test_growth_and_stats();
  return warden::testing::finish("lexer_test");
}
