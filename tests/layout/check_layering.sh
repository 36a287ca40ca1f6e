#!/bin/sh
# The house rules a compiler cannot check: no OS header outside src/backend/, no OS macro
# outside src/backend/ and the one platform header (src/common/platform.h), no process hook
# outside src/backend/ and the platform header, and no layer including a header of a layer above
# it (core -> segment -> arena -> backend -> common).
# Usage: check_layering.sh <source root>
src="$1/src"
fail=0
report() { echo "layering: $1"; fail=1; }

os_headers='#include <(sys/|unistd\.h|pthread\.h|windows\.h|mach/|OS\.h|dlfcn\.h|fcntl\.h|sched\.h|numa\.h|linux/)'
os_macros='(__linux__|_WIN32|_WIN64|__APPLE__|__MACH__|__HAIKU__|__wasi__|__EMSCRIPTEN__|__FreeBSD__)'
# src/backend/ (each OS folder, and select.c which picks one) is where OS code belongs.
for f in $(find "$src" -name '*.[ch]' ! -path "$src/backend/*/*" ! -name select.c); do
  grep -nE "$os_headers" "$f" | sed "s|^|$f: OS header: |" | grep . && fail=1
  [ "$f" = "$src/common/platform.h" ] && continue
  grep -nE "$os_macros" "$f" | sed "s|^|$f: OS macro: |" | grep . && fail=1
done

# Process start and end hooks (constructors, destructors, DllMain) live in the platform header
# and the backends only; the engine expands them once (src/core/start.c).
for f in $(find "$src" -name '*.[ch]' ! -path "$src/backend/*" ! -path "$src/common/platform.h"); do
  grep -nE '__attribute__\(\((constructor|destructor)|DllMain *\(' "$f" | sed "s|^|$f: process hook: |" | grep . && fail=1
done

# Allowed includes per layer. Internal includes are relative to the including file, so the
# layer of an include is the first folder of its resolved path under src/.
check_layer() { # layer, allowed layers
  layer=$1; shift
  for f in $(find "$src/$layer" -name '*.[ch]'); do
    dir=$(dirname "$f")
    for inc in $(sed -n 's|^#include "\([^"]*\)"|\1|p' "$f"); do
      [ "$inc" = "mimalloc.h" ] && continue
      resolved=$(realpath -m "$dir/$inc")
      case "$resolved" in "$(realpath -m "$src")"/*) ;; *) report "$f includes $inc outside src/"; continue ;; esac
      target=$(echo "${resolved#$(realpath -m "$src")/}" | cut -d/ -f1)
      ok=0
      for a in "$@"; do [ "$target" = "$a" ] && ok=1; done
      [ $ok = 1 ] || report "$f includes a header of layer '$target'"
    done
  done
}
check_layer common common
check_layer backend backend common
check_layer arena arena backend common
check_layer segment segment arena backend common
check_layer core core segment arena backend common

if [ $fail = 0 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
exit $fail
