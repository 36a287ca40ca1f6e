#!/usr/bin/env bash
# The Debian packages: builds them from this tree (debian/, dpkg-buildpackage -us -uc -b, in a
# scratch copy), checks them with lintian, then checks what a user of the packages gets:
#
#   packages   libmimalloc2.0, libmimalloc-secure2 and libmimalloc-dev built; lintian has no
#              error or warning (debian/*.lintian-overrides say why for what it would report)
#   abi        tests/abi/distro_program.c, built against Debian's own mimalloc.h and -lmimalloc
#              (libmimalloc-dev 2.0.9), runs on ours: mi_version() says which library it runs with
#   consumers  tests/consumers/run.sh against the packages' files (pkg-config, CMake, Makefile,
#              mimalloc.o)
#
# Where the packages go: with --install (CI sets it: the machine is a throwaway) they replace
# Debian's packages of the same names in the system (apt-get install ./*.deb), and everything
# after runs against /usr; without it they are only unpacked into a scratch folder (dpkg -x), so
# a developer's machine keeps its packages.
#
#   scripts/deb.sh [--install] [--log FILE]
#
# Prints one line per check and last `N passed, N failed`; exit status 1 if one failed. --log
# FILE writes the results as a Meson test log for scripts/testlog-summary.py. Checks that need
# what is not installed (dpkg-buildpackage, debhelper, lintian; Debian's libmimalloc-dev for
# abi) are skipped with the reason, unless the script may install them (root with apt-get).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD
INSTALL=0
LOG=
while (($#)); do
  case $1 in
    --install) INSTALL=1; shift ;;
    --log) LOG=${2:?--log needs a file}; shift 2 ;;
    -h | --help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
case $LOG in '' | /*) ;; *) LOG=$ROOT/$LOG ;; esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lm-deb.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
RESULTS_PREFIX=deb RESULTS_WIDTH=10
# shellcheck source=lib/results.sh
. "$ROOT/scripts/lib/results.sh"

finish() {
  results_write "$LOG"
  results_line
  ((failed == 0))
  exit
}

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" \
    >>"$WORK/apt.log" 2>&1
}

# ---- packages ---------------------------------------------------------------------------------
tools=(dpkg-buildpackage dh lintian fakeroot)
missing=()
for t in "${tools[@]}"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
if ((${#missing[@]})) && can_apt; then
  apt_install dpkg-dev debhelper lintian fakeroot || true
  missing=()
  for t in "${tools[@]}"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
fi
if ((${#missing[@]})); then
  record SKIP packages "${missing[*]} not installed (apt-get install dpkg-dev debhelper lintian fakeroot)"
  record SKIP abi "no packages"
  record SKIP consumers "no packages"
  finish
fi

# The tree as git sees it (tracked files and new ones not ignored), without build folders.
SRC=$WORK/src
mkdir -p "$SRC"
BLOG=$WORK/build.log
if ! (git ls-files -co --exclude-standard -z | tar --null -cf - -T - | tar -xf - -C "$SRC") \
  >"$BLOG" 2>&1; then
  record FAIL packages "copying the tree failed" "$BLOG"
  finish
fi
# The package build runs the unit and API suites itself (debian/rules), as a Debian build does.
if ! (cd "$SRC" && dpkg-buildpackage -us -uc -b) >>"$BLOG" 2>&1; then
  record FAIL packages "dpkg-buildpackage -us -uc -b failed" "$BLOG"
  record SKIP abi "no packages"
  record SKIP consumers "no packages"
  finish
fi
debs=("$WORK"/libmimalloc2.0_*.deb "$WORK"/libmimalloc-secure2_*.deb "$WORK"/libmimalloc-dev_*.deb)
for d in "${debs[@]}"; do
  if [ ! -f "$d" ]; then
    record FAIL packages "$(basename "$d") was not built" "$BLOG"
    finish
  fi
done
# dpkg-gensymbols warns when the exported symbols and debian/*.symbols differ
if grep -q 'dpkg-gensymbols: warning' "$BLOG"; then
  record FAIL packages "the exported symbols differ from debian/*.symbols" "$BLOG"
  finish
fi
LLOG=$WORK/lintian.log
changes=("$WORK"/libmimalloc_*.changes)
if ! lintian --fail-on error,warning "${changes[0]}" >"$LLOG" 2>&1 ||
  grep -qE '^[EW]: ' "$LLOG"; then
  record FAIL packages "lintian reports errors or warnings" "$LLOG"
  finish
fi
record OK packages "$(cd "$WORK" && echo libmimalloc2.0_*.deb libmimalloc-secure2_*.deb libmimalloc-dev_*.deb), lintian clean"

# ---- where the packages go --------------------------------------------------------------------
# Debian's own header and library, for the abi check: what is installed now, before ours.
distro_inc=
distro_ver=$(dpkg-query -W -f '${Version}' libmimalloc-dev 2>/dev/null)
if [ -z "$distro_ver" ] && can_apt; then
  apt_install libmimalloc-dev && distro_ver=$(dpkg-query -W -f '${Version}' libmimalloc-dev 2>/dev/null)
fi
ABI=$WORK/abi
mkdir -p "$ABI"
ALOG=$ABI/log
if [ -n "$distro_ver" ] && [ "$distro_ver" != "$(dpkg-deb -f "${debs[2]}" Version)" ]; then
  # built now, against the distro's files (its checks are ours: not run on the distro's library)
  if cc -O2 -o "$ABI/abi" "$ROOT/tests/abi/distro_program.c" -lmimalloc >"$ALOG" 2>&1; then
    distro_inc=$(printf '#include <mimalloc.h>\nMI_MALLOC_VERSION\n' | cc -E -P - 2>/dev/null | tail -n 1)
  else
    record FAIL abi "building tests/abi/distro_program.c against Debian's libmimalloc-dev failed" "$ALOG"
  fi
fi

if ((INSTALL)); then
  DEST=/
  if ! can_apt; then
    record FAIL packages "--install needs root and apt-get"
    finish
  fi
  if ! apt_install --allow-downgrades "${debs[@]}"; then
    record FAIL packages "apt-get install of the packages failed" "$WORK/apt.log"
    finish
  fi
  run_abi() { "$ABI/abi"; }
else
  DEST=$WORK/root
  for d in "${debs[@]}"; do dpkg -x "$d" "$DEST"; done
  arch=$(cc -print-multiarch 2>/dev/null)
  run_abi() { LD_LIBRARY_PATH=$DEST/usr/lib${arch:+/$arch} "$ABI/abi"; }
fi

# ---- abi: the program built against Debian's files runs on ours -------------------------------
if [ -z "$distro_ver" ]; then
  record SKIP abi "Debian's libmimalloc-dev is not installed"
elif [ "$distro_ver" = "$(dpkg-deb -f "${debs[2]}" Version)" ]; then
  record SKIP abi "the libmimalloc-dev installed is ours ($distro_ver), not Debian's"
elif [ -n "$distro_inc" ]; then
  want=$(awk '$1 == "#define" && $2 == "MI_MALLOC_VERSION" {print $3; exit}' "$ROOT/include/mimalloc.h")
  if run_abi >"$ALOG.ours" 2>&1 && grep -q "^running $want\$" "$ALOG.ours"; then
    record OK abi "built with Debian's mimalloc.h $distro_inc (libmimalloc-dev $distro_ver), runs on ours ($want)"
  else
    record FAIL abi "the program built against Debian's libmimalloc-dev did not run on ours ($want)" "$ALOG.ours"
  fi
fi

# ---- consumers --------------------------------------------------------------------------------
CLOG=$WORK/consumers.log
if CONSUMERS_ROOT=$DEST bash "$ROOT/tests/consumers/run.sh" >"$CLOG" 2>&1; then
  record OK consumers "$(tail -n 1 "$CLOG") (tests/consumers/run.sh with the packages' files)"
else
  record FAIL consumers "tests/consumers/run.sh with the packages' files: $(tail -n 1 "$CLOG")" "$CLOG"
fi
finish
