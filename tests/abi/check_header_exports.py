#!/usr/bin/env python3
"""Every function the public headers declare (mi_decl_export) must be exported by the library.
Usage: check_header_exports.py <libmimalloc.so> <header>..."""
import re
import subprocess
import sys

lib, headers = sys.argv[1], sys.argv[2:]
declared = set()
for h in headers:
    # declarations only: drop preprocessor lines (the mi_decl_* macros are defined there)
    text = "\n".join(l for l in open(h, encoding="utf-8") if not l.lstrip().startswith("#"))
    # a declaration runs from mi_decl_export to the first '(' after the function name
    for m in re.finditer(r"mi_decl_export\b([^;{(]*?)\b(mi_[a-z0-9_]+)\s*\(", text, re.S):
        declared.add(m.group(2))
out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True).stdout
exported = {line.split()[-1] for line in out.splitlines() if line.strip()}
missing = sorted(declared - exported)
for name in missing:
    print("declared but not exported:", name)
print(f"{len(declared) - len(missing)} passed, {len(missing)} failed")
sys.exit(1 if missing else 0)
