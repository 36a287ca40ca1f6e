#!/bin/sh
# Every symbol the distro's libmimalloc 2.0.9 exports must be exported (defined, dynamic) by
# ours, so a binary linked against the distro's library runs against ours.
# Usage: check_symbols.sh <libmimalloc.so.2> <symbol list>
lib="$1"
list="$2"
nm -D --defined-only "$lib" | awk '{print $NF}' | sort -u > "${TMPDIR:-/tmp}/lm-abi-ours.$$"
missing=$(sort -u "$list" | comm -23 - "${TMPDIR:-/tmp}/lm-abi-ours.$$")
rm -f "${TMPDIR:-/tmp}/lm-abi-ours.$$"
total=$(sort -u "$list" | wc -l)
if [ -n "$missing" ]; then
  echo "missing from $lib:"
  echo "$missing"
  n=$(echo "$missing" | wc -l)
  echo "$((total - n)) passed, $n failed"
  exit 1
fi
echo "$total passed, 0 failed"
