#!/usr/bin/env bash
# First contact: the README's main-job command on a machine without cmocka, then again once it
# is there, in a scratch copy of this tree (tracked files and new ones git does not ignore):
#
#   without-cmocka  scripts/main-job.sh (MAIN_JOB_SKIP_BENCH=1) with cmocka hidden from
#                   pkg-config (PKG_CONFIG_LIBDIR: a folder with every other .pc file of the
#                   machine): it builds and runs, with the tests off (Meson's summary says so)
#   with-cmocka     the same command again with pkg-config as it is: the existing build folder
#                   is reconfigured by itself, the tests are on
#   unit            meson test --suite unit in that folder passes
#
#   tests/first-contact.sh [--log FILE]
#
# Prints one line per check and last `N passed, N failed`; exit status 1 if one failed. --log
# FILE writes the results as a Meson test log for scripts/testlog-summary.py. A machine without
# cmocka at all skips with-cmocka and unit.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD
LOG=
while (($#)); do
  case $1 in
    --log) LOG=${2:?--log needs a file}; shift 2 ;;
    -h | --help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
case $LOG in '' | /*) ;; *) LOG=$ROOT/$LOG ;; esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lm-first-contact.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
RESULTS_PREFIX=first-contact RESULTS_WIDTH=15
# shellcheck source=../scripts/lib/results.sh
. "$ROOT/scripts/lib/results.sh"

finish() {
  results_write "$LOG"
  results_line
  ((failed == 0))
  exit
}

# tests_in BUILD: the number of tests of suite unit Meson knows in BUILD
tests_in() {
  meson introspect "$1" --tests 2>/dev/null |
    python3 -c 'import json, sys; print(sum("libmimalloc:unit" in t["suite"] for t in json.load(sys.stdin)))'
}

SRC=$WORK/src
mkdir -p "$SRC"
(cd "$ROOT" && git ls-files -co --exclude-standard -z | tar --null -cf - -T -) | tar -xf - -C "$SRC"

# every .pc file pkg-config would find, but cmocka's
PC=$WORK/pkgconfig
mkdir -p "$PC"
pcdirs=$(pkg-config --variable pc_path pkg-config 2>/dev/null)
IFS=: read -r -a dirs <<<"$pcdirs"
for d in "${dirs[@]}"; do
  for f in "$d"/*.pc; do
    [ -e "$f" ] && [ "$(basename "$f")" != cmocka.pc ] && ln -sf "$f" "$PC/"
  done
done

L1=$WORK/without.log
if ! (cd "$SRC" && PKG_CONFIG_LIBDIR=$PC MAIN_JOB_SKIP_BENCH=1 scripts/main-job.sh) >"$L1" 2>&1; then
  record FAIL without-cmocka "scripts/main-job.sh failed with cmocka hidden" "$L1"
  finish
fi
if ! grep -qE '^ *tests *: False' "$L1" || [ "$(tests_in "$SRC/build")" != 0 ]; then
  record FAIL without-cmocka "the build has tests although cmocka was hidden" "$L1"
  finish
fi
record OK without-cmocka "scripts/main-job.sh built and ran with the tests off"

if ! pkg-config --exists cmocka; then
  record SKIP with-cmocka "cmocka is not installed here"
  record SKIP unit "cmocka is not installed here"
  finish
fi
L2=$WORK/with.log
if ! (cd "$SRC" && MAIN_JOB_SKIP_BENCH=1 scripts/main-job.sh) >"$L2" 2>&1; then
  record FAIL with-cmocka "scripts/main-job.sh failed once cmocka was there" "$L2"
  finish
fi
units=$(tests_in "$SRC/build")
if ! grep -qE '^ *tests *: True' "$L2" || [ "${units:-0}" = 0 ]; then
  record FAIL with-cmocka "the build folder was not reconfigured: no tests" "$L2"
  finish
fi
record OK with-cmocka "the second run reconfigured build/ by itself: $units unit tests"

L3=$WORK/unit.log
if meson test -C "$SRC/build" --suite unit --print-errorlogs >"$L3" 2>&1; then
  record OK unit "meson test --suite unit passes in that build folder"
else
  record FAIL unit "meson test --suite unit failed" "$L3"
fi
finish
