#!/usr/bin/env python3
"""Merge the output of tests/attacks/attacks from several builds into one Markdown table:
which build stops which attack.  Usage: attack-table.py OUTPUT_FILE...  (each file holds the
"attack <name> <build> <result>" lines of one build)."""
import sys

rows, builds = {}, []
for path in sys.argv[1:]:
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        continue
    for line in lines:
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "attack":
            name, build, result = parts[1], parts[2], parts[3]
            if build not in builds:
                builds.append(build)
            rows.setdefault(name, {})[build] = result
if not rows:
    print("no attack results found")
    sys.exit(0)
print("| attack | " + " | ".join(builds) + " |")
print("|---|" + "---|" * len(builds))
for name, results in rows.items():
    print(f"| {name} | " + " | ".join(results.get(b, "-") for b in builds) + " |")
