// The rules: walks the token stream with just enough grammar to know, for every identifier,
// what ast would make of it (a Name, an attribute, a parameter, a keyword argument, an import,
// a match-pattern capture...), and reports what the policy forbids.
#pragma once

#include <string_view>
#include <vector>

#include "scan/lexer.h"
#include "scan/scan.h"

namespace warden::scan {

// Applies the rules to a complete token stream of text. Returns false on input that Python
// would refuse to parse (err is set); findings are then meaningless.
bool apply_rules(std::string_view text, const std::vector<Token>& tokens, const Policy& policy,
                 std::vector<Finding>& findings, LexError& err, Stats& stats);

// Tokenizes text into tokens and applies the rules in the same pass. Returns false on input
// Python would refuse (err is set: the tokenizer's complaint if it has one, else the rules').
bool lex_and_apply_rules(std::string_view text, std::vector<Token>& tokens, const Policy& policy,
                         std::vector<Finding>& findings, LexError& err, Stats& stats);

}  // namespace warden::scan
