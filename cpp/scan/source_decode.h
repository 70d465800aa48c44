// Turns raw source into UTF-8 text the way Python's tokenizer does: UTF-8 BOM, PEP 263 coding
// declaration on line 1 or 2 (with CPython's exact rules for where it may appear), strict
// decoding. Codecs other than UTF-8 and a fixed set of single-byte ASCII-compatible codecs are
// refused: utf-7, unicode_escape and friends can make bytes mean different code than they show.
#pragma once

#include <string>
#include <string_view>

#include "scan/scan.h"

namespace warden::scan {

struct Decoded {
  bool ok = false;
  std::string_view text;  // UTF-8; points into the input or into the caller's storage
  Finding finding{};      // set when !ok
};

Decoded decode_source(std::string_view raw, InputKind kind, std::string& storage, Stats& stats);

// 1-based line and 0-based byte column of offset in text, counting \r\n, \r and \n as line ends.
void line_col_of(std::string_view text, size_t offset, uint32_t& line, uint32_t& col);

}  // namespace warden::scan
