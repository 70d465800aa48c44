// Splits the body of an f-string into its replacement-field expressions, following CPython
// 3.11's fstring_find_literal / fstring_find_expr (ast string parsing), including its refusals.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "scan/scan.h"

namespace warden::scan {

struct Span {
  size_t begin, end;
};

// body is text[begin, end) between the quotes. Appends the expression spans (format specs are
// walked, their nested fields included). Returns false with a message on malformed input.
bool fstring_fields(std::string_view text, size_t begin, size_t end, bool raw,
                    std::vector<Span>& fields, std::string& error, Stats& stats);

}  // namespace warden::scan
