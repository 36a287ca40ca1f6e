#!/usr/bin/env python3
"""Sum Meson test logs into one closing line.

    scripts/testlog-summary.py [--fail LABEL]... TESTLOG.json [TESTLOG.json...]

Each TESTLOG.json is a `meson-logs/testlog.json` (one JSON object per line, with `name` and
`result`). Results count as:
  passed:  OK, EXPECTEDFAIL
  failed:  FAIL, UNEXPECTEDPASS, TIMEOUT, ERROR (and any result this script does not know)
  skipped: SKIP
`--fail LABEL` counts one more failure named LABEL (a stage that failed before its tests could
run, such as a build). A log file that is missing or has an unreadable line also counts as a
failure.

Prints the failing tests, one line per build folder with its counts, and as the LAST line
exactly `N passed, N failed` (followed by `, N skipped` when some were skipped). Exit status 1
if anything failed or if no test ran at all, else 0.
"""

import argparse
import json
import os
import sys

PASSED = {"OK", "EXPECTEDFAIL"}
SKIPPED = {"SKIP"}
FAILED = {"FAIL", "UNEXPECTEDPASS", "TIMEOUT", "ERROR"}


def label_of(path):
    """build-asan/meson-logs/testlog.json -> build-asan"""
    d = os.path.dirname(os.path.abspath(path))
    if os.path.basename(d) == "meson-logs":
        d = os.path.dirname(d)
    return os.path.basename(d) or path


def main():
    ap = argparse.ArgumentParser(description="Sum Meson testlog.json files into "
                                 "'N passed, N failed'.")
    ap.add_argument("logs", nargs="*", metavar="TESTLOG.json")
    ap.add_argument("--fail", action="append", default=[], metavar="LABEL",
                    help="count one failure named LABEL (e.g. a build stage that failed)")
    args = ap.parse_args()

    passed = failed = skipped = 0
    failures = []  # (label, name, result)
    per_file = []

    for path in args.logs:
        label = label_of(path)
        p = f = s = 0
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                for lineno, line in enumerate(fh, 1):
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        entry = json.loads(line)
                        result = str(entry.get("result", "")).upper()
                        name = str(entry.get("name", f"line {lineno}"))
                    except (ValueError, AttributeError):
                        f += 1
                        failures.append((label, f"{path}:{lineno}", "unreadable log line"))
                        continue
                    if result in PASSED:
                        p += 1
                    elif result in SKIPPED:
                        s += 1
                    else:
                        f += 1
                        failures.append((label, name, result if result in FAILED
                                         else f"unknown result {result!r}"))
        except OSError as e:
            f += 1
            failures.append((label, path, f"log missing ({e.strerror})"))
        per_file.append((label, path, p, f, s))
        passed += p
        failed += f
        skipped += s

    for extra in args.fail:
        failed += 1
        failures.append(("stage", extra, "FAILED"))

    for label, path, p, f, s in per_file:
        print(f"{label}: {p} ok, {f} failing, {s} skipped ({path})")
    if failures:
        print("Failing:")
        for label, name, result in failures:
            print(f"  [{label}] {name}: {result}")
    if passed + failed == 0:
        print("No test ran.")

    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line, flush=True)
    return 1 if failed or passed + failed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
