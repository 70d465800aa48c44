// A tokenizer for Python source that follows CPython 3.11's tokenizer.c: the same tokens, the
// same line and column numbers, the same refusals (bad indentation, unterminated strings,
// invalid characters and numbers, unbalanced brackets).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "scan/scan.h"

namespace warden::scan {

enum class Tok : uint8_t { Name, Number, String, Op, Newline, Indent, Dedent, End };

enum Op : uint8_t {
  kOpOther = 0, kLpar, kRpar, kLsqb, kRsqb, kLbrace, kRbrace, kDot, kComma, kColon, kSemi,
  kEqual, kStar, kDoubleStar, kAt, kWalrus, kArrow, kEllipsis,
};

// Hard keywords. kKwNone/True/False are atoms; the rest are never names.
enum Kw : uint8_t {
  kNotKw = 0, kKwFalse, kKwNone, kKwTrue, kKwAnd, kKwAs, kKwAssert, kKwAsync, kKwAwait, kKwBreak,
  kKwClass, kKwContinue, kKwDef, kKwDel, kKwElif, kKwElse, kKwExcept, kKwFinally, kKwFor,
  kKwFrom, kKwGlobal, kKwIf, kKwImport, kKwIn, kKwIs, kKwLambda, kKwNonlocal, kKwNot, kKwOr,
  kKwPass, kKwRaise, kKwReturn, kKwTry, kKwWhile, kKwWith, kKwYield,
};

enum StrFlag : uint8_t { kStrF = 1, kStrB = 2, kStrR = 4, kStrU = 8, kStrTriple = 16 };

struct Token {
  // Left uninitialised: the lexer sizes its output vector ahead of writing, and zeroing that
  // room for every scan would cost as much as filling it.
  Token() {}
  Token(uint32_t start_, uint32_t len_, uint32_t line_, uint32_t col_, uint32_t pair_, Tok type_,
        uint8_t sub_, uint8_t prefix_)
      : start(start_), len(len_), line(line_), col(col_), pair(pair_), type(type_), sub(sub_),
        prefix(prefix_), pad(0) {}

  uint32_t start;  // byte offset in the text
  uint32_t len;
  uint32_t line;
  uint32_t col;
  uint32_t pair;   // brackets: index of the partner token
  Tok type;
  uint8_t sub;     // Op for Op, Kw for Name, StrFlag bits for String
  uint8_t prefix;  // String: length of the prefix letters; Name: 1 if it has non-ASCII bytes
  uint8_t pad;
};

struct LexError {
  uint32_t line = 0;
  uint32_t col = 0;
  std::string message;
};

// Tokenizes text[begin, end). In expression mode the range is the inside of an f-string
// replacement field: it behaves as if enclosed in parentheses (no NEWLINE or INDENT, newlines
// allowed) and produces no End token.
bool lex(std::string_view text, size_t begin, size_t end, bool expression_mode,
         std::vector<Token>& out, LexError& err, Stats& stats);

}  // namespace warden::scan
