// Unicode facts the scanner needs, answered from tables generated out of Python's unicodedata
// (gen_unicode_tables.py), because the scanner runs without the GIL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace warden::scan {

// Decodes one UTF-8 sequence of already-validated text; returns its length in bytes.
size_t utf8_decode(std::string_view s, size_t pos, uint32_t& cp);
void utf8_append(std::string& out, uint32_t cp);

// Length of the valid UTF-8 prefix of s, strict as Python's codec (no overlongs, no
// surrogates, nothing above U+10FFFF).
size_t utf8_valid_prefix(std::string_view s);

bool is_xid_start(uint32_t cp);
bool is_xid_continue(uint32_t cp);

// The NFKC image of a non-ASCII identifier character when that image is pure ASCII, else
// nullptr. Enough to decide exactly whether an identifier normalises to a given ASCII name:
// NFKC of a string is ASCII exactly when the NFKC of each of its characters is.
const char* nfkc_ascii(uint32_t cp);

// Appends the NFKC form of an identifier if it is pure ASCII; returns false when the normalised
// identifier contains non-ASCII characters (then it can equal no ASCII name).
bool identifier_ascii_nfkc(std::string_view raw, std::string& out);

}  // namespace warden::scan
