// Unit test of the rules (rules.h): which identifiers are the Names, attributes, imports and
// calls the policy refuses, and which are parameters, keyword arguments, definitions or
// captures that it does not. The expectations agree with the reference scanner
// (python/warden/scan_reference.py, on Python's ast) for the same policy. Every source is run
// both ways, the rules applied while lexing and over the finished tokens, which must agree.
#include "scan/rules.h"

#include <algorithm>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "scan/lexer.h"
#include "scan/scan.h"
#include "testing/check.h"

namespace warden::scan {
namespace {

Policy test_policy() {
  Policy p;
  p.forbidden_modules = {"os", "subprocess", "importlib", "ctypes", "pkg.secret"};
  p.allowed_modules = {"os.path"};
  for (const char* b : {"eval", "exec", "__import__", "compile"}) p.forbidden_builtins.insert(b);
  p.forbidden_names.insert("__builtins__");
  for (const char* a : {"__class__", "__globals__", "f_globals", "__subclasses__",
                        "a_very_long_attribute_name"})
    p.forbidden_attributes.insert(a);
  p.package = "pkg.sub";
  return p;
}

const Policy& policy() {
  static const Policy p = test_policy();
  return p;
}

struct Applied {
  bool ok;
  std::vector<Finding> findings;
  LexError err;
};

void sort_findings(std::vector<Finding>& f) {
  auto key = [](const Finding& x) { return std::tie(x.line, x.col, x.rule, x.message); };
  std::sort(f.begin(), f.end(), [&](const Finding& a, const Finding& b) { return key(a) < key(b); });
}

Applied one_pass(std::string_view src, const Policy& pol) {
  Applied r;
  std::vector<Token> tokens;
  Stats stats;
  r.ok = lex_and_apply_rules(src, tokens, pol, r.findings, r.err, stats);
  sort_findings(r.findings);
  return r;
}

Applied two_passes(std::string_view src, const Policy& pol) {
  Applied r;
  std::vector<Token> tokens;
  Stats stats;
  r.ok = lex(src, 0, src.size(), false, tokens, r.err, stats) &&
         apply_rules(src, tokens, pol, r.findings, r.err, stats);
  sort_findings(r.findings);
  return r;
}

std::string show(const Applied& r) {
  if (!r.ok) return "refused: " + r.err.message;
  std::string out;
  for (const Finding& f : r.findings) {
    if (!out.empty()) out += ' ';
    out += std::string(rule_id(f.rule)) + "@" + std::to_string(f.line) + ":" + std::to_string(f.col);
  }
  return out;
}

// The findings for src as "rule@line:col ..." (sorted by line, column, rule), or "refused: message". Checks on the
// way that the one-pass and the two-pass runs agree, messages included.
std::string findings_of(std::string_view src, const Policy& pol = policy()) {
  Applied a = one_pass(src, pol), b = two_passes(src, pol);
  bool same = a.ok == b.ok && a.findings.size() == b.findings.size();
  for (size_t i = 0; same && i < a.findings.size(); ++i)
    same = a.findings[i].rule == b.findings[i].rule && a.findings[i].line == b.findings[i].line &&
           a.findings[i].col == b.findings[i].col && a.findings[i].message == b.findings[i].message;
  if (same && !a.ok) same = a.err.message == b.err.message;
  CHECK(same, "one pass and two passes disagree on <%.*s>: %s / %s", static_cast<int>(src.size()),
        src.data(), show(a).c_str(), show(b).c_str());
  return show(a);
}

void test_imports() {
  CHECK_EQ(findings_of("import os\n"), "import-forbidden@1:7");
  // The longest entry decides: os.path is allowed, the rest of os is not.
  CHECK_EQ(findings_of("import os.path\n"), "");
  CHECK_EQ(findings_of("import os.environ\n"), "import-forbidden@1:7");
  CHECK_EQ(findings_of("import json, subprocess as sp\n"), "import-forbidden@1:13");
  CHECK_EQ(findings_of("from os import path, system\n"), "import-forbidden@1:21");
  CHECK_EQ(findings_of("from os import (path,\n    system)\n"), "import-forbidden@2:4");
  CHECK_EQ(findings_of("from os import *\n"), "import-forbidden@1:15");
  CHECK_EQ(findings_of("from importlib import import_module\n"), "import-forbidden@1:22");
  CHECK_EQ(findings_of("import ctypes.util as u; import json\n"), "import-forbidden@1:7");
  // 'import' inside a string or as part of a name is not an import.
  CHECK_EQ(findings_of("x = 'import os'\nimport_os = 1\n"), "");
  // 'from' that is not an import statement.
  CHECK_EQ(findings_of("def g():\n    yield from os\n"), "");
  CHECK_EQ(findings_of("raise E from os\n"), "");

  Applied r = one_pass("from os import system\n", policy());
  CHECK(r.ok && r.findings.size() == 1, "one finding");
  if (r.ok && r.findings.size() == 1)
    CHECK_EQ(r.findings[0].message, "import of module 'os.system' is refused by the policy");
}

void test_relative_imports() {
  // Resolved against the policy's package, pkg.sub.
  CHECK_EQ(findings_of("from .. import secret\n"), "import-forbidden@1:15");
  CHECK_EQ(findings_of("from . import secret\n"), "");  // pkg.sub.secret
  CHECK_EQ(findings_of("from ..secret import x\n"), "import-forbidden@1:21");
  // Above the top of the package: cannot be resolved, not checked.
  CHECK_EQ(findings_of("from ... import os\n"), "");
  // Without a package, relative imports are not checked at all.
  Policy no_package = test_policy();
  no_package.package = "";
  CHECK_EQ(findings_of("from .. import secret\n", no_package), "");
  CHECK_EQ(findings_of("import os\n", no_package), "import-forbidden@1:7");
}

void test_import_calls() {
  CHECK_EQ(findings_of("import_module('os')\n"), "import-forbidden@1:0");
  CHECK_EQ(findings_of("import_module('os.path')\n"), "");
  CHECK_EQ(findings_of("import_module('o' 's')\n"), "import-forbidden@1:0");
  CHECK_EQ(findings_of("import_module(name)\n"), "import-dynamic@1:0");
  CHECK_EQ(findings_of("import_module(f'os')\n"), "import-dynamic@1:0");
  // A relative name depends on the 'package' argument, which the rules do not read.
  CHECK_EQ(findings_of("import_module('.x')\n"), "import-dynamic@1:0");
  // __import__ is also a forbidden builtin of this policy: both findings (at one place, they
  // are in the order of the Rule enum).
  CHECK_EQ(findings_of("__import__('subprocess')\n"), "import-forbidden@1:0 builtin-forbidden@1:0");
  CHECK_EQ(findings_of("__import__(name)\n"), "import-dynamic@1:0 builtin-forbidden@1:0");
  CHECK_EQ(findings_of("m = __import__('json')\n"), "builtin-forbidden@1:4");
}

void test_builtins_and_names() {
  CHECK_EQ(findings_of("eval('1')\n"), "builtin-forbidden@1:0");
  CHECK_EQ(findings_of("eval = 1\n"), "builtin-forbidden@1:0");
  CHECK_EQ(findings_of("x = [eval for eval in y]\n"), "builtin-forbidden@1:5 builtin-forbidden@1:14");
  CHECK_EQ(findings_of("print(__builtins__)\n"), "name-forbidden@1:6");
  CHECK_EQ(findings_of("x = 1; eval\n"), "builtin-forbidden@1:7");
  // An attribute of that name is not the builtin.
  CHECK_EQ(findings_of("x.eval('1')\n"), "");
  // Keyword arguments, parameters and their defaults.
  CHECK_EQ(findings_of("f(eval=1)\n"), "");
  CHECK_EQ(findings_of("f(x, eval == 1)\n"), "builtin-forbidden@1:5");
  CHECK_EQ(findings_of("def f(eval, *, exec=2): pass\n"), "");
  CHECK_EQ(findings_of("def f(*eval, **exec): pass\n"), "");
  CHECK_EQ(findings_of("def f(x=eval): pass\n"), "builtin-forbidden@1:8");
  CHECK_EQ(findings_of("def f(x: eval): pass\n"), "builtin-forbidden@1:9");
  CHECK_EQ(findings_of("lambda eval: eval\n"), "builtin-forbidden@1:13");
  CHECK_EQ(findings_of("f(lambda eval=1: 0)\n"), "");
  // Definitions and declarations bind the name without reading it.
  CHECK_EQ(findings_of("def eval(): pass\n"), "");
  CHECK_EQ(findings_of("class eval: pass\n"), "");
  CHECK_EQ(findings_of("global eval\n"), "");
  CHECK_EQ(findings_of("try:\n  pass\nexcept E as eval:\n  pass\n"), "");
  // 'with ... as' stores into a Name, which ast reports like any other.
  CHECK_EQ(findings_of("with a as eval:\n  pass\n"), "builtin-forbidden@1:10");
  // NFKC: a fullwidth letter makes the same name for Python.
  CHECK_EQ(findings_of("\xef\xbd\x85val(1)\n"), "builtin-forbidden@1:0");

  Applied r = one_pass("eval(x)\n", policy());
  CHECK(r.ok && r.findings.size() == 1 &&
            r.findings[0].message.find("builtin 'eval' is refused") == 0,
        "message of a builtin finding");
}

void test_attributes() {
  CHECK_EQ(findings_of("x.__class__\n"), "attr-forbidden@1:2");
  CHECK_EQ(findings_of("x . __class__\n"), "attr-forbidden@1:4");
  CHECK_EQ(findings_of("x.\\\n  __class__\n"), "attr-forbidden@2:2");
  // Names longer than the sixteen bytes of a key are compared in full.
  CHECK_EQ(findings_of("x.a_very_long_attribute_name\n"), "attr-forbidden@1:2");
  CHECK_EQ(findings_of("x.a_very_long_attribute_namf\n"), "");
  // A bare name that is only a forbidden attribute is not refused.
  CHECK_EQ(findings_of("__class__ = 1\n"), "");
}

void test_getattr_calls() {
  CHECK_EQ(findings_of("getattr(x, '__class__')\n"), "attr-forbidden@1:0");
  CHECK_EQ(findings_of("setattr(x, 'f_globals', 1)\n"), "attr-forbidden@1:0");
  CHECK_EQ(findings_of("y.getattr(x, '__class__')\n"), "attr-forbidden@1:2");
  CHECK_EQ(findings_of("getattr(x,\n        '__class__')\n"), "attr-forbidden@1:0");
  CHECK_EQ(findings_of("getattr(x, 'safe')\n"), "");
  // The literal's value is what counts: concatenation, escapes, raw strings, parentheses.
  CHECK_EQ(findings_of("getattr(x, '__cl' 'ass__')\n"), "attr-forbidden@1:0");
  CHECK_EQ(findings_of("getattr(x, '\\x5f_class__')\n"), "attr-forbidden@1:0");
  CHECK_EQ(findings_of("getattr(x, '\\137_class__')\n"), "attr-forbidden@1:0");
  CHECK_EQ(findings_of("getattr(x, r'__class__')\n"), "attr-forbidden@1:0");
  CHECK_EQ(findings_of("getattr(x, (('__class__')))\n"), "attr-forbidden@1:0");
  // A name the scanner cannot know is reported as computed.
  CHECK_EQ(findings_of("getattr(x, name)\n"), "getattr-dynamic@1:0");
  CHECK_EQ(findings_of("getattr(x, '\\N{LOW LINE}_class__')\n"), "getattr-dynamic@1:0");
  CHECK_EQ(findings_of("getattr(x, b'__class__')\n"), "getattr-dynamic@1:0");
  CHECK_EQ(findings_of("getattr(x, f'__class__')\n"), "getattr-dynamic@1:0");
  CHECK_EQ(findings_of("getattr(x)\n"), "getattr-dynamic@1:0");
  // The second argument, not the second string: commas inside brackets do not count.
  CHECK_EQ(findings_of("getattr(x, g('a', 'b'), '__class__')\n"), "getattr-dynamic@1:0");
  CHECK_EQ(findings_of("getattr(f(a, b), '__class__')\n"), "attr-forbidden@1:0");
  CHECK_EQ(findings_of("getattr(lambda a, b: 0, 'safe')\n"), "");
}

void test_fstrings() {
  // A finding inside an f-string is reported at the start of its string group.
  CHECK_EQ(findings_of("s = f'{eval(1)}'\n"), "builtin-forbidden@1:4");
  CHECK_EQ(findings_of("s = 'a' f'{x.__class__}'\n"), "attr-forbidden@1:4");
  CHECK_EQ(findings_of("s = f'{f\"{eval}\"}'\n"), "builtin-forbidden@1:4");
  CHECK_EQ(findings_of("f'{x!r:>{eval}}'\n"), "builtin-forbidden@1:0");
  CHECK_EQ(findings_of("f'''\n{eval}'''\n"), "builtin-forbidden@1:0");
  // Doubled braces are text.
  CHECK_EQ(findings_of("f'{{eval}}'\n"), "");
  CHECK_EQ(findings_of("'{eval}'\n"), "");
}

void test_match() {
  // A capture pattern binds the name; a value pattern reads it.
  CHECK_EQ(findings_of("match x:\n    case eval:\n        pass\n"), "");
  CHECK_EQ(findings_of("match x:\n    case eval.y:\n        pass\n"), "builtin-forbidden@2:9");
  CHECK_EQ(findings_of("match x:\n    case [eval, *exec]:\n        pass\n"
                       "    case {'k': eval}:\n        pass\n"),
           "");
  CHECK_EQ(findings_of("match x:\n    case C(a=eval):\n        pass\n"), "");
  CHECK_EQ(findings_of("match x:\n    case y if eval(y):\n        pass\n"), "builtin-forbidden@2:14");
  // 'match' and 'case' as ordinary names.
  CHECK_EQ(findings_of("match = eval\n"), "builtin-forbidden@1:8");
  CHECK_EQ(findings_of("match(eval)\n"), "builtin-forbidden@1:6");
  CHECK_EQ(findings_of("case = 1\n"), "");
}

void test_refusals() {
  CHECK_EQ(findings_of("print 'x'\n"),
           "refused: invalid syntax: two expressions side by side (Python 2 code?)");
  CHECK_EQ(findings_of("if x:\npass\n"), "refused: expected an indented block");
  CHECK_EQ(findings_of("if x:\n"), "refused: expected an indented block");
  CHECK_EQ(findings_of("x = 1\n    y = 2\n"), "refused: unexpected indent");
  CHECK_EQ(findings_of("x = b'a' 'b'\n"), "refused: cannot mix bytes and nonbytes literals");
  CHECK_EQ(findings_of("f'{}'\n"), "refused: f-string: empty expression not allowed");
  CHECK_EQ(findings_of("f'{eval'\n"), "refused: f-string: expecting '}'");
  CHECK_EQ(findings_of("f'{a $ b}'\n"), "refused: in f-string expression: invalid character '$'");
  // The tokenizer's refusal comes through the one-pass run as it is.
  CHECK_EQ(findings_of("x = (\n"), "refused: '(' was never closed");
  // Adjacent strings are one expression, not two.
  CHECK_EQ(findings_of("x = 'a' 'b' f'c'\n"), "");
}

void test_empty_policy() {
  Policy none;
  CHECK_EQ(findings_of("import os\neval(x)\nx.__class__\ngetattr(x, 'y')\n", none), "");
  // Dynamic calls are reported whatever the policy: what they reach cannot be checked.
  CHECK_EQ(findings_of("getattr(x, y)\n__import__(m)\n", none),
           "getattr-dynamic@1:0 import-dynamic@2:0");
  Policy everything;
  everything.forbidden_modules = {"*"};
  everything.allowed_modules = {"json"};
  CHECK_EQ(findings_of("import json.decoder, re\n", everything), "import-forbidden@1:21");
}

}  // namespace
}  // namespace warden::scan

int main() {
  using namespace warden::scan;
  test_imports();
  test_relative_imports();
  test_import_calls();
  test_builtins_and_names();
  test_attributes();
  test_getattr_calls();
  test_fstrings();
  test_match();
  test_refusals();
  test_empty_policy();
  return warden::testing::finish("rules_test");
}
