#!/bin/sh
# Compile-only check of the Haiku backend and the POSIX helper it uses, against our own
# declarations (tests/haiku/include: see its README.md), with clang's Haiku target. Prints the
# usual "N passed, M failed" line (one test per file).
#   compile.sh [SOURCE_ROOT [CLANG [FILE...]]]   (default: every file of both folders)
root=${1:-.}
clang=${2:-clang}
[ $# -gt 2 ] && shift 2 || set -- "$root"/src/backend/haiku/*.c "$root"/src/backend/posix/*.c
pass=0 fail=0
for f in "$@"; do
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
