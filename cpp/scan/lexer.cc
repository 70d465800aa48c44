#include "scan/lexer.h"

#include "scan/lexer_impl.h"

namespace warden::scan {

bool lex(std::string_view text, size_t begin, size_t end, bool expression_mode,
         std::vector<Token>& out, LexError& err, Stats& stats) {
  NoSink none;
  return lex_with(text, begin, end, expression_mode, out, err, stats, none);
}

}  // namespace warden::scan
