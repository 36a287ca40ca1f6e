#!/usr/bin/env bash
# Consumers: installs the default build (build/) into a scratch folder (meson install
# --destdir), then builds and runs small projects that take the library in each supported way:
#
#   meson-subproject  a Meson project with this source tree as subprojects/libmimalloc, found
#                     through the wrap's [provide]; its `meson test` must hold only its own test
#   meson-pkgconfig   a Meson project: dependency('mimalloc') through pkg-config, shared and
#                     static (the .pc file's Libs.private), and `pkg-config --static` itself
#   cmake             find_package(mimalloc 2.1 CONFIG): targets mimalloc, mimalloc-static,
#                     mimalloc-obj and ${MIMALLOC_OBJECT_DIR}/mimalloc.o; the version rule
#   makefile          a plain Makefile: -I/-L from the install, -lmimalloc
#   static-object     mimalloc.o first in the link, with libc shared and fully static
#
# Every program (app.c) checks the mi_ API and that the library it runs with is the one whose
# header it was built with; each one that links the override checks that plain malloc is ours.
#
#   tests/consumers/run.sh [--log FILE]
#
# Prints one line per consumer (ok, FAIL with the step that failed and the end of its log, or
# skip with the reason) and last `N passed, N failed` (`, N skipped`); exit status 1 if one
# failed. --log FILE also writes the results as a Meson test log (one JSON object per line),
# for scripts/testlog-summary.py. Environment: CONSUMERS_BUILD (default build) the build folder
# to install; CONSUMERS_ROOT=DIR instead takes an install already there, laid out as Debian's
# packages lay it out (/usr, /usr/lib/<multiarch>) under DIR (/ for the installed packages, or
# the folder the .debs were unpacked into: scripts/deb.sh); TEST_JOBS (default 2) compile
# jobs; CONSUMERS_KEEP=1 keeps the scratch folder.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
ROOT=$PWD
HERE=$ROOT/tests/consumers
BUILD=${CONSUMERS_BUILD:-build}
ROOTDIR=${CONSUMERS_ROOT:-}
JOBS=${TEST_JOBS:-2}
LOG=

while (($#)); do
  case $1 in
    --log) LOG=${2:?--log needs a file}; shift 2 ;;
    --log=*) LOG=${1#--log=}; shift ;;
    -h | --help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
case $LOG in '' | /*) ;; *) LOG=$ROOT/$LOG ;; esac
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lm-consumers.XXXXXX") || exit 1
cleanup() {
  if [ "${CONSUMERS_KEEP:-0}" = 1 ]; then
    echo "scratch folder kept: $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
STAGE=$WORK/stage

RESULTS_PREFIX=consumers RESULTS_WIDTH=17 RESULTS_TAIL=25
# shellcheck source=../../scripts/lib/results.sh
. "$ROOT/scripts/lib/results.sh"

# step DESCRIPTION COMMAND...: runs COMMAND (time-limited) with its output in $CLOG; on failure
# REASON says which step
CLOG=
REASON=
step() {
  local what=$1
  shift
  printf '\n$ %s\n' "$*" >>"$CLOG"
  if ! timeout --kill-after=10 300 "$@" >>"$CLOG" 2>&1; then
    REASON="$what failed"
    return 1
  fi
}

# have PROGRAM...: REASON names the first one missing
have() {
  local p
  for p in "$@"; do
    if ! command -v "$p" >/dev/null 2>&1; then
      REASON="$p not installed"
      return 1
    fi
  done
}

# fresh copy of tests/consumers/NAME, with the shared program, in $WORK/NAME
copy_project() {
  cp -R "$HERE/$1" "$WORK/$1" && cp "$HERE/app.c" "$WORK/$1/"
}

# no_needed_lib FILE: a program linked statically must not load the shared library
no_needed_lib() {
  printf '\n$ readelf -d %s | grep NEEDED\n' "$1" >>"$CLOG"
  readelf -d "$1" | grep NEEDED >>"$CLOG"
  if readelf -d "$1" | grep -q 'NEEDED.*libmimalloc'; then
    REASON="$(basename "$1") loads the shared library although it linked the static one"
    return 1
  fi
}

# ---- the install --------------------------------------------------------------------------
# Where meson puts things: the prefix and folders the build was set up with, under $STAGE.
read_layout() {
  python3 - "$BUILD" <<'EOF'
import json, os, sys
opts = {o["name"]: o["value"] for o in json.load(open(os.path.join(sys.argv[1], "meson-info", "intro-buildoptions.json")))}
prefix = opts["prefix"]
# meson keeps libdir and includedir relative to the prefix unless they lie outside it
lib = os.path.join(prefix, opts["libdir"])
inc = os.path.join(prefix, opts["includedir"])
override = opts["override"] and opts["b_sanitize"] == "none" and not opts["valgrind"]
print(prefix, lib, inc, "override" if override else "-", sep="\n")
EOF
}

# check_layout: every file the consumers need is there
check_layout() {
  local f
  for f in "$S_INCDIR/mimalloc.h" "$S_LIBDIR/libmimalloc.so.2" "$S_LIBDIR/libmimalloc.a" \
    "$S_LIBDIR/mimalloc.o" "$S_LIBDIR/pkgconfig/mimalloc.pc" \
    "$S_LIBDIR/cmake/mimalloc/mimalloc-config.cmake"; do
    if [ ! -e "$f" ]; then
      REASON="${f#"$STAGE"} not installed${1:-}"
      return 1
    fi
  done
}

# use_root: the install under $ROOTDIR, in Debian's layout
use_root() {
  CLOG=$WORK/install.log
  local arch
  arch=$(cc -print-multiarch 2>/dev/null)
  STAGE=${ROOTDIR%/} PREFIX=/usr LIBDIR=/usr/lib${arch:+/$arch} INCDIR=/usr/include
  S_PREFIX=$STAGE$PREFIX S_LIBDIR=$STAGE$LIBDIR S_INCDIR=$STAGE$INCDIR
  check_layout " under ${ROOTDIR}"
}

install_build() {
  CLOG=$WORK/install.log
  if [ ! -f "$BUILD/build.ninja" ]; then
    REASON="$BUILD is not a build folder (meson setup $BUILD)"
    return 1
  fi
  step "ninja -C $BUILD" ninja -C "$BUILD" -j "$JOBS" || return 1
  step "meson install" meson install -C "$BUILD" --no-rebuild --destdir "$STAGE" || return 1
  local layout
  layout=$(read_layout) || { REASON="reading the build's options failed"; return 1; }
  { read -r PREFIX; read -r LIBDIR; read -r INCDIR; read -r OVERRIDE; } <<<"$layout"
  # the install lies under $STAGE: every path it was set up with, there
  S_PREFIX=$STAGE$PREFIX S_LIBDIR=$STAGE$LIBDIR S_INCDIR=$STAGE$INCDIR
  # every program that links the library checks that malloc is ours
  if [ "$OVERRIDE" != override ]; then
    REASON="$BUILD does not export the libc names (override, sanitizer or valgrind build)"
    return 1
  fi
  check_layout " (is $BUILD the default build?)"
}

# ---- the consumers ------------------------------------------------------------------------
consumer_meson_subproject() {
  local p=$WORK/meson-subproject
  copy_project meson-subproject || return 1
  # this source tree as the subproject, where the wrap would have fetched it
  ln -s "$ROOT" "$p/subprojects/libmimalloc"
  # --force-fallback-for: an installed mimalloc (Debian's libmimalloc-dev) must not be taken
  step "meson setup" meson setup "$p/build" "$p" --force-fallback-for=mimalloc || return 1
  step "meson compile" meson compile -C "$p/build" -j "$JOBS" || return 1
  step "meson test" meson test -C "$p/build" --print-errorlogs || return 1
  # the subproject's own tests and benchmarks stay out of the parent's test list
  local tests
  tests=$(meson introspect "$p/build" --tests 2>>"$CLOG" |
    python3 -c 'import json, sys; print(" ".join(sorted(t["name"] for t in json.load(sys.stdin))))')
  printf '\n$ meson introspect --tests (names)\n%s\n' "$tests" >>"$CLOG"
  if [ "$tests" != app ]; then
    REASON="the parent's tests are not only its own: '$tests'"
    return 1
  fi
  # nor are the benchmark programs built
  if [ -e "$p/build/subprojects/libmimalloc/bench" ]; then
    REASON="the subproject built its benchmarks"
    return 1
  fi
}

consumer_meson_pkgconfig() {
  local p=$WORK/meson-pkgconfig
  copy_project meson-pkgconfig || return 1
  # the .pc file names the prefix it was set up with; the sysroot puts that under $STAGE (and
  # under a sysroot no folder counts as the system's, whose -L/-I pkg-config would leave out)
  export PKG_CONFIG_PATH=$S_LIBDIR/pkgconfig PKG_CONFIG_SYSROOT_DIR=$STAGE
  [ -n "$STAGE" ] && export PKG_CONFIG_SYSTEM_LIBRARY_PATH=/nonexistent \
    PKG_CONFIG_SYSTEM_INCLUDE_PATH=/nonexistent
  local libs
  libs=$(pkg-config --static --libs mimalloc 2>>"$CLOG")
  printf '\n$ pkg-config --static --libs mimalloc\n%s\n' "$libs" >>"$CLOG"
  local want wants=(-lmimalloc -pthread)
  [ -n "$STAGE" ] && wants+=("-L$S_LIBDIR") # (the system's own folder goes without -L)
  # a library that links libnuma must have a static link name it too (Requires.private: numa)
  if readelf -d "$S_LIBDIR"/libmimalloc.so.2 2>/dev/null | grep -q 'libnuma'; then
    wants+=(-lnuma)
  fi
  for want in "${wants[@]}"; do
    case " $libs " in
      *" $want "*) ;;
      *) REASON="pkg-config --static --libs mimalloc: no $want in '$libs'"
         unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_SYSTEM_LIBRARY_PATH \
           PKG_CONFIG_SYSTEM_INCLUDE_PATH
         return 1 ;;
    esac
  done
  step "meson setup" meson setup "$p/build" "$p"
  local rc=$?
  unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_SYSTEM_LIBRARY_PATH \
    PKG_CONFIG_SYSTEM_INCLUDE_PATH
  ((rc == 0)) || return 1
  step "meson compile" meson compile -C "$p/build" -j "$JOBS" || return 1
  step "meson test" meson test -C "$p/build" --print-errorlogs || return 1
  no_needed_lib "$p/build/app-static" || return 1
}

consumer_cmake() {
  have cmake || return 77
  local p=$WORK/cmake generator=()
  copy_project cmake || return 1
  # Ninja is there already (Meson needs it); make is not always
  command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
  step "version rule (version-check.cmake)" \
    cmake -DPACKAGE_DIR="$S_LIBDIR/cmake/mimalloc" -P "$p/version-check.cmake" || return 1
  step "cmake configure" cmake -S "$p" -B "$p/build" "${generator[@]}" \
    -DCMAKE_PREFIX_PATH="$S_PREFIX" -DEXPECT_PREFIX="$S_PREFIX" || return 1
  step "cmake build" cmake --build "$p/build" -j "$JOBS" || return 1
  (cd "$p/build" && step ctest ctest --output-on-failure) || { REASON="ctest failed"; return 1; }
  no_needed_lib "$p/build/app-static" || return 1
  no_needed_lib "$p/build/app-obj" || return 1
}

consumer_makefile() {
  have make || return 77
  copy_project makefile || return 1
  step "make app-shared" make -C "$WORK/makefile" INCDIR="$S_INCDIR" LIBDIR="$S_LIBDIR" \
    app-shared || return 1
  step "run app-shared" "$WORK/makefile/app-shared" override || return 1
}

consumer_static_object() {
  have make || return 77
  local d=$WORK/static-object
  mkdir -p "$d" && cp "$HERE/makefile/Makefile" "$HERE/app.c" "$d/" || return 1
  step "make app-object" make -C "$d" INCDIR="$S_INCDIR" LIBDIR="$S_LIBDIR" app-object || return 1
  step "run app-object" "$d/app-object" override || return 1
  no_needed_lib "$d/app-object" || return 1
  if [ ! -f "$(cc -print-file-name=libc.a)" ]; then
    echo "note: no libc.a, fully static link not tried" >>"$CLOG"
    return 0
  fi
  step "make app-object-static" make -C "$d" INCDIR="$S_INCDIR" LIBDIR="$S_LIBDIR" \
    app-object-static || return 1
  step "run app-object-static" "$d/app-object-static" override || return 1
}

# name: what it checks, shown on its line
CONSUMERS=(
  "meson-subproject:dependency('mimalloc') from the wrap's subproject; parent's test list its own"
  "meson-pkgconfig:dependency('mimalloc') via pkg-config, shared and static: true"
  "cmake:find_package(mimalloc 2.1 CONFIG): mimalloc, mimalloc-static, mimalloc-obj"
  "makefile:cc -I/-L from the install, -lmimalloc"
  "static-object:mimalloc.o first in the link (libc shared, and -static)"
)

# ---- run ----------------------------------------------------------------------------------
install_ok=1
REASON=
if [ -n "$ROOTDIR" ]; then
  use_root
else
  install_build
fi
if (($? != 0)); then
  install_ok=0
  install_reason=$REASON
  echo "install of ${ROOTDIR:-$BUILD} failed: $install_reason"
  tail -n 25 "$WORK/install.log" 2>/dev/null | sed 's/^/      | /'
fi

for entry in "${CONSUMERS[@]}"; do
  name=${entry%%:*}
  what=${entry#*:}
  if ((!install_ok)); then
    record FAIL "$name" "not run: install failed ($install_reason)"
    continue
  fi
  CLOG=$WORK/$name.log
  REASON=
  : >"$CLOG"
  "consumer_${name//-/_}"
  rc=$?
  if ((rc == 0)); then
    record OK "$name" "$what"
  elif ((rc == 77)); then
    record SKIP "$name" "$REASON"
  else
    record FAIL "$name" "${REASON:-failed}" "$CLOG"
  fi
done

results_write "$LOG"
results_line
((failed == 0))
