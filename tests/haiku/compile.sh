#!/bin/sh
# Compile-only check of the Haiku backend and the POSIX helper it uses, against our own
# declarations (tests/haiku/include: see its README.md), with clang's Haiku target. Prints the
# usual "N passed, M failed" line (one test per file). Usage: compile.sh <source root> [clang]
root=${1:-.}
clang=${2:-clang}
pass=0 fail=0
for f in "$root"/src/backend/haiku/*.c "$root"/src/backend/posix/*.c; do
  # -nostdlibinc: the Haiku target's default include path holds the host's /usr/include.
  if "$clang" --target=x86_64-unknown-haiku -nostdlibinc -isystem "$root/tests/haiku/include" \
      -I"$root/src" -std=gnu11 -Wall -Wextra -Werror -O2 -c "$f" -o /dev/null; then
    pass=$((pass + 1))
  else
    echo "haiku: $f does not compile"
    fail=$((fail + 1))
  fi
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
