// Unit test of the scanner's interface (scan.h): the name sets the rules look names up in,
// which modules a policy refuses, and what scan_source() makes of a whole source (decoding
// first, findings sorted and without duplicates, a refused source as one syntax error).
#include "scan/scan.h"

#include <string>
#include <string_view>
#include <vector>

#include "testing/check.h"

namespace warden::scan {
namespace {

void test_name_set() {
  NameSet s;
  std::vector<std::string> names;
  for (int i = 0; i < 200; ++i) names.push_back("name_" + std::to_string(i));
  for (const std::string& n : names) s.insert(n);
  CHECK_EQ(s.size(), 200u);
  int found = 0;
  for (const std::string& n : names) found += s.contains(n);
  CHECK_EQ(found, 200);
  int strays = 0;
  for (int i = 200; i < 2000; ++i) strays += s.contains("name_" + std::to_string(i));
  CHECK_EQ(strays, 0);
  // Inserting again, or the empty name, changes nothing.
  s.insert("name_7");
  s.insert("");
  CHECK_EQ(s.size(), 200u);
  CHECK(!s.contains(""), "the empty name");

  // Past sixteen bytes a name is compared in full, not by its key alone.
  NameSet longs;
  longs.insert("sixteen_bytes_xx_and_then_a");
  CHECK(longs.contains("sixteen_bytes_xx_and_then_a"), "long name");
  CHECK(!longs.contains("sixteen_bytes_xx_and_then_b"), "same first sixteen bytes and length");
  CHECK(!longs.contains("sixteen_bytes_xx"), "its first sixteen bytes");
  CHECK(!longs.contains("sixteen_bytes_xx_and_then_ab"), "longer");
  // Names that differ only in length or a trailing NUL.
  NameSet shorts;
  shorts.insert("ab");
  CHECK(!shorts.contains("a") && !shorts.contains("abc"), "prefix or extension");
  CHECK(!shorts.contains(std::string_view("ab\0", 3)), "a trailing NUL");
}

void test_name_keys_in_text() {
  // A name's key is the same wherever it stands: within a longer text (read sixteen bytes at
  // once, then masked) or at its very end (read byte by byte).
  std::string text = "x = compile_it(y)";
  NameKey mid = name_key_at(text, 4, 10);
  NameKey alone = name_key("compile_it");
  CHECK(mid.lo == alone.lo && mid.hi == alone.hi && mid.len == alone.len && mid.hash == alone.hash,
        "key in a text");
  std::string end = "x = compile_it";
  NameKey last = name_key_at(end, 4, 10);
  CHECK(last.lo == alone.lo && last.hi == alone.hi && last.hash == alone.hash, "key at the end");
  CHECK_EQ(name_hash_at(text, 4, 10), alone.hash);
  NameSet s;
  s.insert("compile_it");
  CHECK(s.contains(mid) && s.contains(last), "lookups by key");
  CHECK(!s.contains(name_key_at(text, 4, 9)), "a shorter slice of the same bytes");
}

void test_module_policy() {
  Policy p;
  p.forbidden_modules = {"os", "xml.etree", "a"};
  p.allowed_modules = {"os.path", "a.b"};
  // An entry covers its submodules, on dot boundaries only.
  CHECK(p.module_forbidden("os"), "os");
  CHECK(p.module_forbidden("os.environ.x"), "os.environ.x");
  CHECK(!p.module_forbidden("osx"), "osx");
  CHECK(!p.module_forbidden("xml"), "xml");
  CHECK(p.module_forbidden("xml.etree.ElementTree"), "xml.etree.ElementTree");
  // The longest entry decides.
  CHECK(!p.module_forbidden("os.path"), "os.path");
  CHECK(!p.module_forbidden("os.path.join"), "os.path.join");
  CHECK(!p.module_forbidden("a.b.c"), "a.b.c");
  CHECK(p.module_forbidden("a.bc"), "a.bc");
  // Allowed wins over forbidden for the same entry.
  p.allowed_modules.insert("xml.etree");
  CHECK(!p.module_forbidden("xml.etree.ElementTree"), "allowed and forbidden alike");

  Policy star;
  star.forbidden_modules = {"*"};
  star.allowed_modules = {"json", "collections.abc"};
  CHECK(star.module_forbidden("re"), "* forbids re");
  CHECK(!star.module_forbidden("json.decoder"), "json allowed under *");
  CHECK(star.module_forbidden("collections"), "collections");
  CHECK(!star.module_forbidden("collections.abc"), "collections.abc");
  star.allowed_modules.insert("*");
  CHECK(!star.module_forbidden("re"), "* allowed and forbidden");
  CHECK(!Policy{}.module_forbidden("os"), "the empty policy forbids nothing");
}

Policy small_policy() {
  Policy p;
  p.forbidden_modules = {"os"};
  p.forbidden_builtins.insert("eval");
  p.forbidden_attributes.insert("__class__");
  return p;
}

std::string show(const Result& r) {
  std::string out;
  for (const Finding& f : r.findings) {
    if (!out.empty()) out += ' ';
    out += std::string(rule_id(f.rule)) + "@" + std::to_string(f.line) + ":" + std::to_string(f.col);
  }
  return out;
}

void test_scan_source() {
  Policy p = small_policy();
  // Sorted by position whatever order the rules found them in.
  Result r = scan_source("x.__class__\nimport os\neval(1)\n", InputKind::Text, p);
  CHECK_EQ(show(r), "attr-forbidden@1:2 import-forbidden@2:7 builtin-forbidden@3:0");
  CHECK_EQ(r.stats.bytes, 30u);
  CHECK(r.stats.tokens > 0 && r.stats.steps >= r.stats.bytes, "stats");
  // Two fields of one f-string report at the same place with the same message: once.
  CHECK_EQ(show(scan_source("f'{eval}{eval}'\n", InputKind::Text, p)), "builtin-forbidden@1:0");
  CHECK_EQ(show(scan_source("eval(x); eval(x)\n", InputKind::Text, p)),
           "builtin-forbidden@1:0 builtin-forbidden@1:9");

  // A source Python refuses: one finding, the refusal, and nothing found before it.
  r = scan_source("import os\nx = (\n", InputKind::Text, p);
  CHECK_EQ(show(r), "syntax-error@2:4");
  if (r.findings.size() == 1)
    CHECK_EQ(r.findings[0].message, "Python refuses to parse this source: '(' was never closed");
  CHECK_EQ(show(scan_source("print 'x'\nimport os\n", InputKind::Text, p)).substr(0, 13),
           "syntax-error@");
}

void test_decoding() {
  Policy p = small_policy();
  CHECK_EQ(show(scan_source("\xef\xbb\xbfimport os\n", InputKind::Bytes, p)), "import-forbidden@1:7");
  // A declared single-byte codec: columns are in bytes of the decoded, UTF-8 line.
  CHECK_EQ(show(scan_source("# -*- coding: latin-1 -*-\nx = '\xe9'; eval(x)\n", InputKind::Bytes, p)),
           "builtin-forbidden@2:10");
  // Codecs that can make bytes mean other code than they show, and unknown ones.
  for (const char* src : {"# coding: utf-7\nimport os\n", "# coding: rot13\n",
                          "# vim: set fileencoding=unicode_escape :\n", "# coding: bogus\n"})
    CHECK_EQ(show(scan_source(src, InputKind::Bytes, p)), "encoding-refused@1:0");
  CHECK_EQ(show(scan_source("x = '\xff'\n", InputKind::Bytes, p)), "decode-error@1:5");
  // Text is decoded already: its coding line is checked, not applied.
  CHECK_EQ(show(scan_source("# coding: latin-1\nimport os\n", InputKind::Text, p)),
           "import-forbidden@2:7");
}

void test_rule_ids() {
  // Part of warden's public interface: the Python side and users' configurations name them.
  CHECK_EQ(std::string(rule_id(Rule::ImportForbidden)), "import-forbidden");
  CHECK_EQ(std::string(rule_id(Rule::ImportDynamic)), "import-dynamic");
  CHECK_EQ(std::string(rule_id(Rule::BuiltinForbidden)), "builtin-forbidden");
  CHECK_EQ(std::string(rule_id(Rule::NameForbidden)), "name-forbidden");
  CHECK_EQ(std::string(rule_id(Rule::AttrForbidden)), "attr-forbidden");
  CHECK_EQ(std::string(rule_id(Rule::GetattrDynamic)), "getattr-dynamic");
  CHECK_EQ(std::string(rule_id(Rule::EncodingRefused)), "encoding-refused");
  CHECK_EQ(std::string(rule_id(Rule::DecodeError)), "decode-error");
  CHECK_EQ(std::string(rule_id(Rule::SyntaxError)), "syntax-error");
}

}  // namespace
}  // namespace warden::scan

int main() {
  using namespace warden::scan;
  test_name_set();
  test_name_keys_in_text();
  test_module_policy();
  test_scan_source();
  test_decoding();
  test_rule_ids();
  return warden::testing::finish("scan_test");
}
