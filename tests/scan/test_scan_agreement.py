"""The C++ scanner and the ast reference agree on every .py file of the running interpreter's
standard library (test directories included, site-packages excluded): same (rule, line, col)
sets; on the few files ast refuses, both refuse with a syntax-error (see warden.scan.reference
for why only the rule is compared there)."""

from __future__ import annotations

import os
import sys
import sysconfig
from concurrent.futures import ProcessPoolExecutor

import pytest
import warden
from warden.scan.reference import reference_scan


def stdlib_files() -> list[str]:
    root = sysconfig.get_paths()["stdlib"]
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x != "site-packages")
        out.extend(os.path.join(d, f) for f in sorted(files) if f.endswith(".py"))
    return out


def _reference(paths: list[str]) -> list[frozenset]:
    out = []
    for p in paths:
        with open(p, "rb") as fh:
            out.append(frozenset((f.rule, f.line, f.col) for f in reference_scan(fh.read())))
    return out


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the C++ scanner follows the 3.10/3.11 "
                    "grammar; 3.12's PEP 701 f-strings are not implemented in it yet")
def test_every_stdlib_file_agrees_with_the_ast_reference():
    files = stdlib_files()
    assert len(files) > 500, "the standard library was not found"
    native = warden.scan_paths(files)
    chunks = [files[i::8] for i in range(8)]
    with ProcessPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(_reference, chunks))
    reference = {}
    for chunk, res in zip(chunks, results):
        reference.update(zip(chunk, res))
    mismatches, refused, total = [], 0, 0
    for path in files:
        got = {(f.rule, f.line, f.col) for f in native[path]}
        ref = set(reference[path])
        total += len(ref)
        if any(r == "syntax-error" for r, _, _ in ref | got):
            refused += 1
            got, ref = {r for r, _, _ in got}, {r for r, _, _ in ref}
        if got != ref:
            mismatches.append((path, sorted(ref - got)[:5], sorted(got - ref)[:5]))
    assert not mismatches, f"{len(mismatches)} files disagree, first: {mismatches[:5]}"
    assert total > 1000, "the default policy found almost nothing: the comparison is vacuous"
    assert refused < 20, f"{refused} files refused as syntax errors: the lexer is too strict"
