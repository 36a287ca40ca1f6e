#!/usr/bin/env bash
# The project's test command: installs what is missing, then builds and tests these ways.
#
#   scripts/test.sh
#
#   1. build/       the default (release) build (NUMA through raw syscalls): everything is
#      built, then every suite runs (torture included: 256 threads in waves, 1,000 forks,
#      signals, a 30-second soak)
#   1b. consumers   build/ installed into a scratch folder and used by small projects the ways
#      others take it in: Meson subproject and pkg-config, CMake find_package, a Makefile with
#      -lmimalloc, mimalloc.o in a static link (tests/consumers/run.sh)
#   1c. first contact  the main job's command with cmocka hidden from pkg-config (it builds
#      and runs without the tests), then again with it (build/ reconfigures by itself, the unit
#      tests pass): tests/first-contact.sh, in a scratch copy
#   1d. build-numa/  -Dnuma=enabled -Dhuge_pages=disabled (libnuma, no explicit huge pages):
#      suites unit, override, hugepages
#   2. build-asan/  ASan + UBSan (debugoptimized, override=false): suites unit, stress, api and
#      container
#   3. build-tsan/  TSan (debugoptimized, override=false): suites unit, stress and container
#   4. build-secure/, build-debug/  -Dsecure=true and -Ddebug_level=3: every suite but bench
#      (and but torture in the debug build, whose heap checks make it slow);
#      then the attack catalogue's table (which build stops which attack)
#   5. build-valgrind/  -Dvalgrind=true: the API tests under valgrind, and suite valgrind
#   6. build-guarded/  -Dguarded=true (guarded sampling on by default): suites unit and api
#   7. build-secure-ordered/  -Dsecure=true -Dsecure_shuffle=false: suites unit, api, attacks
#   8. build-win/  Windows: cross-built with mingw-w64 (cross/x86_64-w64-mingw32.txt,
#      -Dwerror=true), every suite of tests/windows (the backend, conformance, layer, public API
#      and stress tests) run under wine, headless, with its prefix in
#      build-win/wineprefix; installs gcc-mingw-w64-x86-64, wine and wine64 when it can (as root
#      with apt-get), else says so and skips; the layer tests need cmocka built for mingw, from
#      Debian's source package (fetched into subprojects/cmocka)
#   8c. build-arm64/  aarch64 Linux: cross-built (cross/aarch64-linux-gnu.txt, libnuma off,
#      cmocka built with the cross compiler from subprojects/cmocka), every suite but bench run
#      under qemu-user except what qemu-user does not emulate (the fork tests, the transparent
#      huge page tests, the container tests, single-thread: see run_aarch64); installs
#      gcc-aarch64-linux-gnu and qemu-user when it can, else says so and skips
#   8d. build-i686/  i386 Linux: cross-built (cross/i686-linux-gnu.txt, libnuma off, cmocka built
#      with the cross compiler from subprojects/cmocka), and every suite but bench run natively
#      on the x86-64 kernel: unit, api, stress, torture (forks included), override (the i386 .so
#      preloaded into i386 programs), container, hugepages, attacks. Left out: the real-program
#      override tests (the installed programs are amd64) and the distro-program ABI test (the
#      distro library is amd64), which Meson leaves out of cross builds. Installs
#      gcc-i686-linux-gnu, libc6-dev-i386-cross and libc6-i386 when it can, else says so and skips
#   8e. build-wasm/  wasm32-wasi: cross-built with clang (cross/wasm32-wasi.txt, static library),
#      the wasm backend's conformance suite and the API suites (through the cmocka shim of
#      tests/wasm) run under Node's WASI; installs wasi-libc, libclang-rt-14-dev-wasm32 and lld-14
#      when it can, and skips (saying so) without them or without Node >= 20
#   8f. build-musl/  x86_64 Linux with musl (cross/x86_64-linux-musl.txt, musl-gcc, libnuma off,
#      cmocka built with musl-gcc from subprojects/cmocka): suites unit, api, stress and
#      override (LD_PRELOAD through musl's loader, and static-libc: a fully static program whose
#      C library's allocations are ours); installs musl-tools when it can, else says so and skips
#   8g. build-compile-only/  systems nothing here runs, compiled and linked only
#      (tests/compile-only/run.sh): the macOS library for x86-64 and arm64 with zig 0.11 from npm
#      (installed into build-zig/ and kept), its exports, interposing section and a program linked
#      to it; the Haiku backend against our own declarations (tests/haiku). Installs npm and
#      llvm-14 when it can; without npm or the registry the macOS checks are skipped, saying so
#   8b. build-fuzz/  the API fuzzer (tests/fuzz/run.sh, clang libFuzzer + ASan + UBSan): 20000
#      inputs from the seed corpus
#   9. debian packages  built, checked with lintian, a program built against Debian's
#      libmimalloc-dev run on them, the consumers built against them (scripts/deb.sh; with
#      CI=true installed in place of Debian's packages)
#
# The sanitizer builds do not export the libc names (-Doverride=false): a sanitizer brings its
# own malloc, and a second one linked into the same program crashes it at start. For the same
# reason suite 'override' (plain programs under LD_PRELOAD) runs only in build/.
# Each build folder is made afresh.
# A stage that fails does not stop the others; the last line printed is the combined
# `N passed, N failed` of all of them (scripts/testlog-summary.py), and the exit status is
# non-zero if anything failed. Environment: TEST_JOBS (default 2) tests run at once.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
JOBS="${TEST_JOBS:-2}"

say() { printf '\n==> %s\n' "$*"; }

# ---- what is needed -------------------------------------------------------------------------
install_missing() {
  local pkgs=() optional=()
  command -v meson >/dev/null 2>&1 || pkgs+=(meson)
  command -v ninja >/dev/null 2>&1 || pkgs+=(ninja-build)
  command -v pkg-config >/dev/null 2>&1 || pkgs+=(pkg-config)
  command -v gcc >/dev/null 2>&1 || pkgs+=(gcc libc6-dev)
  command -v g++ >/dev/null 2>&1 || pkgs+=(g++)
  command -v nm >/dev/null 2>&1 || pkgs+=(binutils)
  command -v valgrind >/dev/null 2>&1 || pkgs+=(valgrind)
  command -v cmake >/dev/null 2>&1 || pkgs+=(cmake)
  command -v make >/dev/null 2>&1 || pkgs+=(make)
  [ -f /usr/include/mimalloc.h ] || optional+=(libmimalloc-dev)
  command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
  if command -v pkg-config >/dev/null 2>&1; then
    pkg-config --exists cmocka 2>/dev/null || pkgs+=(libcmocka-dev)
    pkg-config --exists numa 2>/dev/null || pkgs+=(libnuma-dev)
  else
    pkgs+=(libcmocka-dev libnuma-dev)
  fi
  # the real programs that the override suite runs (each such test skips when one is missing)
  command -v perl >/dev/null 2>&1 || optional+=(perl)
  command -v sqlite3 >/dev/null 2>&1 || optional+=(sqlite3)
  command -v git >/dev/null 2>&1 || optional+=(git)
  ((${#pkgs[@]} + ${#optional[@]})) || return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing: ${pkgs[*]} ${optional[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update && apt-get install -y "${pkgs[@]}" "${optional[@]}"
    return
  fi
  if ((${#optional[@]})); then
    echo "note: ${optional[*]} missing: the override tests that run them will skip" >&2
  fi
  if ((${#pkgs[@]})); then
    echo "missing: ${pkgs[*]} (install them, e.g. sudo apt-get install -y ${pkgs[*]})" >&2
    return 1
  fi
}

failed_stages=()
logs=()

fail() {
  echo "!! FAILED: $1" >&2
  failed_stages+=(--fail "$1")
}

# fresh_setup DIR [meson options...]: a new build folder, whatever was there before
fresh_setup() {
  local dir=$1
  shift
  rm -rf "$dir"
  meson setup "$dir" "$@"
}

# stage_build NAME DIR [meson options...]: a new build folder, set up and every target built;
# false (reported) on failure. Cross stages leave tests=auto: without cmocka for the target,
# Meson still builds the plain test programs.
stage_build() {
  local name=$1 dir=$2
  shift 2
  say "$name: meson setup $dir $*"
  if ! fresh_setup "$dir" "$@"; then
    fail "$name: meson setup"
    return 1
  fi
  say "$name: ninja -C $dir"
  if ! ninja -C "$dir"; then
    fail "$name: ninja (build)"
    return 1
  fi
}

# stage_test NAME DIR TIMEOUT_S [meson test options...]: the tests, within the time limit; the
# log joins the summary. The environment of the tests is whatever the caller exported.
stage_test() {
  local name=$1 dir=$2 limit=$3
  shift 3
  say "$name: meson test -C $dir $*"
  local rc=0
  timeout --kill-after=30 "$limit" \
    meson test -C "$dir" --print-errorlogs --num-processes "$JOBS" "$@" || rc=$?
  local log="$dir/meson-logs/testlog.json"
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    fail "$name: meson test ran past ${limit}s"
  fi
  if [ -f "$log" ]; then
    logs+=("$log")
  elif [ "$rc" != 0 ]; then
    fail "$name: meson test exited $rc without a log"
  else
    echo "note: $name: no test was selected"
  fi
}

# stage_script NAME TIMEOUT_S LOG SCRIPT [ARGS...]: a test script that writes a Meson-style log
# (its --log LOG), within the time limit; the log joins the summary.
stage_script() {
  local name=$1 limit=$2 log=$3 script=$4 rc=0
  shift 4
  say "$name: $script $* --log $log"
  timeout --kill-after=30 "$limit" bash "$script" "$@" --log "$log" || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    fail "$name: ran past ${limit}s"
  fi
  if [ -f "$log" ]; then
    logs+=("$log")
  else
    fail "$name: $script exited $rc without a log"
  fi
}

# run_pass NAME DIR TIMEOUT_S "SETUP OPTIONS" [meson test options...]: a native build with the
# tests required (cmocka missing is an error here), then its tests.
run_pass() {
  local name=$1 dir=$2 limit=$3 setup_opts=$4
  shift 4
  # shellcheck disable=SC2086  # setup_opts is a list of words
  stage_build "$name" "$dir" -Dtests=enabled $setup_opts && stage_test "$name" "$dir" "$limit" "$@"
}

# run_consumers TIMEOUT_S: tests/consumers/run.sh, whose results it writes as a Meson test log
# (build-consumers/meson-logs/testlog.json) that the summary counts with the others
run_consumers() {
  rm -rf build-consumers
  stage_script consumers "$1" build-consumers/meson-logs/testlog.json tests/consumers/run.sh
}

# fetch_mingw_cmocka: Debian has no mingw or musl build of cmocka; tests/cmocka-from-source builds
# one from Debian's source package, unpacked into subprojects/cmocka (git-ignored). apt-get fetches it with a
# deb-src list of its own (build-apt-src/), so the machine's apt configuration stays untouched.
# Without it the Windows layer tests are left out (meson says so); nothing fails.
fetch_mingw_cmocka() {
  [ -f subprojects/cmocka/CMakeLists.txt ] && return 0
  command -v apt-get >/dev/null 2>&1 || return 1
  local dir=build-apt-src suite
  suite=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-bookworm}")
  rm -rf "$dir" && mkdir -p "$dir/parts" "$dir/lists/partial" "$dir/get" || return 1
  printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$suite" > "$dir/parts/debian-src.sources"
  local apto=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$PWD/$dir/parts"
    -o "Dir::State::Lists=$PWD/$dir/lists")
  apt-get "${apto[@]}" update >/dev/null 2>&1 &&
    (cd "$dir/get" && apt-get "${apto[@]}" source --download-only cmocka >/dev/null 2>&1) ||
    return 1
  local tarball
  tarball=$(ls "$dir"/get/cmocka_*.orig.tar.* 2>/dev/null | head -n 1)
  [ -n "$tarball" ] || return 1
  mkdir -p subprojects/cmocka && tar -xf "$tarball" -C subprojects/cmocka --strip-components=1
}

# need_tools NAME CHECK WHAT PACKAGE...: true when the command CHECK succeeds, after installing
# the packages where it fails and this can (root with apt-get; the package lists are refreshed
# once if the first try fails); otherwise says that WHAT is missing and the stage is skipped.
need_tools() {
  local name=$1 check=$2 what=$3
  shift 3
  if ! $check && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "$name: installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null ||
      { DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null; } ||
      true
  fi
  $check && return 0
  echo "note: $name: $what is missing and could not be installed (needs root and apt-get):" \
    "skipped" >&2
  return 1
}

# run_windows TIMEOUT_S: the Windows build under wine (stage 8). Wine's background services keep
# a pipe open until the wineserver exits, so the server is started first with its output on
# /dev/null, the prefix is made once (wineboot, the slow part: ~10 s), and the server is stopped
# at the end (or this step would never end).
run_windows() {
  local limit=$1 dir=build-win
  have_windows_tools() {
    command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 && command -v wine >/dev/null 2>&1 &&
      command -v wineserver >/dev/null 2>&1
  }
  need_tools windows have_windows_tools "mingw-w64 or wine" gcc-mingw-w64-x86-64 wine wine64 ||
    return
  if ! fetch_mingw_cmocka; then
    echo "note: windows: cmocka's source package could not be fetched: the Windows layer" \
      "tests are left out" >&2
  fi
  stage_build windows "$dir" --cross-file cross/x86_64-w64-mingw32.txt -Dwerror=true \
    -Dtests=enabled || return
  say "windows: a headless wine prefix in $dir/wineprefix"
  (
    # no display, no debug channels, no Mono/Gecko installers at the prefix's creation
    export WINEPREFIX="$PWD/$dir/wineprefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
    unset DISPLAY
    wineserver -p </dev/null >/dev/null 2>&1
    timeout 300 wine wineboot -i </dev/null >/dev/null 2>&1 || echo "note: windows: wineboot exited $?"
    say "windows: meson test -C $dir (exe wrapper wine)"
    rc=0
    timeout --kill-after=30 "$limit" \
      meson test -C "$dir" --print-errorlogs --num-processes "$JOBS" || rc=$?
    # Wine itself failing to start a program (exit status 1, not a line of output: seen once,
    # for a test that passed in every other run) is no verdict on the test: those run once
    # more, alone, and their second result replaces the first in the log.
    if [ "$rc" = 1 ]; then
      again=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    t = json.loads(line)
    if t["result"] == "FAIL" and t.get("returncode") == 1 and not (t.get("stdout") or "").strip():
        print(t["name"].split(" / ")[-1])' "$dir/meson-logs/testlog.json")
      if [ -n "$again" ]; then
        say "windows: wine did not start $(echo $again); once more"
        # shellcheck disable=SC2086  # one test name per word
        timeout --kill-after=30 300 meson test -C "$dir" --print-errorlogs --num-processes 1 \
          --logbase testlog-again $again || true
        python3 -c '
import json, sys
log, again = sys.argv[1], sys.argv[2]
second = {}
for line in open(again):
    t = json.loads(line)
    second[t["name"]] = line
lines = [second.get(json.loads(l)["name"], l) for l in open(log)]
open(log, "w").writelines(l if l.endswith("\n") else l + "\n" for l in lines)
bad = [json.loads(l)["name"] for l in lines if json.loads(l)["result"] not in ("OK", "SKIP", "EXPECTEDFAIL")]
sys.exit(1 if bad else 0)' "$dir/meson-logs/testlog.json" "$dir/meson-logs/testlog-again.json" &&
          rc=0
      fi
    fi
    wineserver -k >/dev/null 2>&1
    exit $rc
  )
  local rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    fail "windows: meson test ran past ${limit}s"
  fi
  if [ -f "$dir/meson-logs/testlog.json" ]; then
    logs+=("$dir/meson-logs/testlog.json")
  else
    fail "windows: meson test exited $rc without a log"
  fi
}

# run_aarch64 TIMEOUT_S: the library cross-built for aarch64 (cmocka from its source with the
# cross compiler), and every suite but bench run under qemu-user (stage 8c), except the tests
# that observe what qemu-user does not emulate: the fork tests (qemu-user 7.2 itself aborts,
# "cpu == current_cpu", when a threaded guest forks), the transparent huge page tests (the THP
# prctl is not emulated, and smaps shows qemu's own mappings), the container tests (they
# re-execute themselves, which needs binfmt_misc for aarch64 on the host) and single-thread
# (qemu-user's own threads are in the guest's /proc/self/status).
run_aarch64() {
  local limit=$1 dir=build-arm64
  have_arm_tools() {
    command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1
  }
  need_tools aarch64 have_arm_tools "the cross compiler or qemu-user" gcc-aarch64-linux-gnu \
    libc6-dev-arm64-cross qemu-user || return
  fetch_mingw_cmocka ||
    echo "note: aarch64: cmocka's source package could not be fetched: only the plain programs" \
      "(stress, torture) are built" >&2
  stage_build aarch64 "$dir" --cross-file cross/aarch64-linux-gnu.txt -Dnuma=disabled || return
  local unemulated=' fork_threads torture_forks backend-linux option-thp-off option-thp-on'
  unemulated+=' option-large-pages large-pages container-aware container-off container-inline'
  unemulated+=' single-thread '
  local tests=() name
  while read -r name; do
    case "$unemulated" in *" $name "*) ;; *) tests+=("$name") ;; esac
  done < <(meson test -C "$dir" --list --no-suite bench 2>/dev/null | sed -n 's|^[^ ]* / ||p')
  say "aarch64: ${#tests[@]} tests under qemu-user (exe wrapper qemu-aarch64): every suite" \
    "but bench, without those it cannot run:$unemulated"
  stage_test aarch64 "$dir" "$limit" "${tests[@]}"
}

# run_i686 TIMEOUT_S: the library cross-built for i386 (cmocka from its source with the cross
# compiler) and the native suites run natively (stage 8d).
run_i686() {
  local limit=$1 dir=build-i686
  have_i686_tools() {
    command -v i686-linux-gnu-gcc >/dev/null 2>&1 && [ -e /usr/i686-linux-gnu/lib/libc.so.6 ]
  }
  need_tools i686 have_i686_tools "the cross compiler" gcc-i686-linux-gnu libc6-dev-i386-cross \
    libc6-i386 || return
  fetch_mingw_cmocka ||
    echo "note: i686: cmocka's source package could not be fetched: only the plain programs" \
      "(stress, torture, override) are built and run" >&2
  stage_build i686 "$dir" --cross-file cross/i686-linux-gnu.txt -Dnuma=disabled &&
    stage_test i686 "$dir" "$limit" --no-suite bench
}

# run_wasm TIMEOUT_S: the library cross-built for wasm32-wasi, its suites run under Node's WASI
# (stage 8e). Debian's own nodejs (18) lacks the WASI options the runner needs: Node 20 or later
# must already be on the machine.
run_wasm() {
  local limit=$1 dir=build-wasm
  have_wasm_tools() {
    command -v clang-14 >/dev/null 2>&1 && command -v wasm-ld-14 >/dev/null 2>&1 &&
      command -v llvm-ar-14 >/dev/null 2>&1 && [ -f /usr/lib/wasm32-wasi/libc.a ] &&
      ls /usr/lib/llvm-14/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1
  }
  need_tools wasm have_wasm_tools "clang-14, lld-14 or wasi-libc" wasi-libc \
    libclang-rt-14-dev-wasm32 lld-14 llvm-14 clang-14 || return
  if ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null; then
    echo "note: wasm: Node 20 or later is needed to run the tests (found:" \
      "$(node --version 2>/dev/null || echo none)): skipped" >&2
    return
  fi
  # (cross/bin: the compiler wrapper and the exe_wrapper the cross file names)
  local path="$PWD/cross/bin:$PATH"
  PATH=$path stage_build wasm "$dir" --cross-file cross/wasm32-wasi.txt -Dtests=enabled &&
    PATH=$path stage_test wasm "$dir" "$limit"
}

# run_musl TIMEOUT_S: the library built with musl-gcc, shared and static, and the unit, api,
# stress and override suites run natively through musl's loader (stage 8f). cmocka comes from
# Debian's source package, built with musl-gcc (the folder the Windows stage uses).
run_musl() {
  local limit=$1 dir=build-musl
  have_musl_tools() { command -v musl-gcc >/dev/null 2>&1; }
  need_tools musl have_musl_tools musl-gcc musl-tools musl-dev || return
  fetch_mingw_cmocka ||
    echo "note: musl: cmocka's source package could not be fetched: only the stress suite" \
      "is built" >&2
  stage_build musl "$dir" --cross-file cross/x86_64-linux-musl.txt -Dnuma=disabled &&
    stage_test musl "$dir" "$limit" --suite unit --suite api --suite stress --suite override
}

if ! install_missing; then
  fail "install: packages missing"
fi

# 1. default build: every target first (meson test builds only what tests need), every suite
run_pass "build" build 1800 ""

# 1b. build/ as other projects use it: installed (into a scratch folder), then found and linked
run_consumers 600

# 1c. First contact: the main job's command with cmocka hidden, then again with it
#     (tests/first-contact.sh, in a scratch copy of the tree)
run_first_contact() {
  rm -rf build-first-contact
  stage_script "first contact" "$1" build-first-contact/meson-logs/testlog.json \
    tests/first-contact.sh
}
run_first_contact 900

# 1d. With libnuma (enabled, so a missing libnuma fails here instead of going unnoticed) and
#     without explicit huge pages (-Dhuge_pages=disabled): the backend's libnuma path and the
#     build with the huge-page paths compiled out; the layer tests (the real backend's binding
#     test among them), the API's huge-page test and the preloaded programs
run_pass "numa" build-numa 900 "-Dnuma=enabled -Dhuge_pages=disabled" \
  --suite unit --suite override --suite hugepages

# 2. AddressSanitizer + UndefinedBehaviorSanitizer (meson sets no UBSAN_OPTIONS: without
#    halt_on_error a UBSan report alone would not fail a test)
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=0
run_pass "asan" build-asan 900 \
  "-Db_sanitize=address,undefined -Dbuildtype=debugoptimized -Doverride=false" \
  --suite unit --suite stress --suite api --suite checkers --suite container \
  --no-suite override --timeout-multiplier 3
unset UBSAN_OPTIONS ASAN_OPTIONS

# 3. ThreadSanitizer
export TSAN_OPTIONS=halt_on_error=1
run_pass "tsan" build-tsan 900 "-Db_sanitize=thread -Dbuildtype=debugoptimized -Doverride=false" \
  --suite unit --suite stress --suite container --no-suite override --timeout-multiplier 5
unset TSAN_OPTIONS

# 4. The hardened and the checking builds pass the whole suite (benchmarks' smoke runs aside:
#    they are the release build's), the attack catalogue included.
run_pass "secure" build-secure 1800 "-Dsecure=true" --no-suite bench
run_pass "debug" build-debug 1800 "-Ddebug_level=3" --no-suite bench --no-suite torture

# 4b. The secure build with fresh blocks in address order (-Dsecure_shuffle=false): every other
#     hardening stays, so the attack catalogue's secure column must hold for it too.
run_pass "secure-ordered" build-secure-ordered 900 "-Dsecure=true -Dsecure_shuffle=false" \
  --suite unit --suite api --suite attacks

# 4c. Guarded sampling on by default (1 in 4000 mallocs before a guard page): the API holds.
run_pass "guarded" build-guarded 900 "-Dguarded=true" --suite unit --suite api

# 5. The valgrind build (-Dvalgrind=true: blocks annotated for memcheck, no libc override): the
#    API tests pass under valgrind with no error, and valgrind reports the errors a program
#    makes with our blocks (suite checkers).
if command -v valgrind >/dev/null 2>&1; then
  run_pass "valgrind" build-valgrind 1800 "-Dvalgrind=true" \
    --wrapper "valgrind --error-exitcode=1 -q" --timeout-multiplier 10 api posix heap cxx
  # with --wrapper, meson names its log after the wrapper: testlog-valgrind.json
  if [ -f build-valgrind/meson-logs/testlog-valgrind.json ]; then
    logs+=("build-valgrind/meson-logs/testlog-valgrind.json")
  else
    fail "valgrind: no test log"
  fi
  if [ -d build-valgrind ]; then
    meson test -C build-valgrind --suite checkers --print-errorlogs --logbase testlog-vgsuite \
      || true
    [ -f build-valgrind/meson-logs/testlog-vgsuite.json ] &&
      logs+=("build-valgrind/meson-logs/testlog-vgsuite.json")
  fi
else
  fail "valgrind: not installed"
fi

# 8. Windows: mingw-w64 cross build, the tests/windows suites under wine
run_windows 900

# 8c. aarch64: cross build, the suites under qemu-user (but what it does not emulate)
run_aarch64 600

# 8d. i386: cross build, the native suites run natively
run_i686 600

# 8e. wasm32-wasi: cross build, the conformance and API suites under Node's WASI
run_wasm 600

# 8f. musl: musl-gcc build, the unit, api, stress and override suites natively (musl's loader)
run_musl 600

# 8b. The API fuzzer (tests/fuzz): a short fixed run, 20000 inputs from the seed corpus, with
#    clang's libFuzzer, ASan and UBSan (clang is installed when missing; without it the stage is
#    skipped with a note). The long form is manual: tests/fuzz/run.sh --time 3600.
if ! command -v clang >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  say "installing clang (for the fuzzer)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y clang >/dev/null || true
fi
say "fuzz: tests/fuzz/run.sh --runs 20000"
fuzz_rc=0
timeout --kill-after=30 900 bash tests/fuzz/run.sh --runs 20000 \
  --log build-fuzz/meson-logs/testlog.json || fuzz_rc=$?
if [ "$fuzz_rc" = 77 ]; then
  echo "note: fuzz: clang with libFuzzer is missing: skipped"
elif [ -f build-fuzz/meson-logs/testlog.json ]; then
  logs+=("build-fuzz/meson-logs/testlog.json")
else
  fail "fuzz: tests/fuzz/run.sh exited $fuzz_rc without a log"
fi

# 8g. macOS and Haiku, compiled and linked only (tests/compile-only/run.sh)
run_compile_only() {
  if { ! command -v npm >/dev/null 2>&1 || ! command -v llvm-nm-14 >/dev/null 2>&1; } &&
      [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "compile-only: installing npm llvm-14"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends npm llvm-14 \
      >/dev/null || true
  fi
  stage_script compile-only "$1" build-compile-only/meson-logs/testlog.json \
    tests/compile-only/run.sh
}
run_compile_only 900

# 9. The Debian packages (scripts/deb.sh): built from debian/, lintian clean, a program built
#    against Debian's own libmimalloc-dev runs on them, the consumers build against their files.
#    Last, because with CI=true they are installed in place of Debian's packages (a CI machine
#    is a throwaway), and the stages before use Debian's header for the ABI test; elsewhere
#    they are only unpacked into a scratch folder.
run_deb() {
  local args=()
  [ "${CI:-}" = true ] && args+=(--install)
  rm -rf build-deb
  stage_script "debian packages" "$1" build-deb/meson-logs/testlog.json scripts/deb.sh \
    "${args[@]}"
}
run_deb 1200

# ---- which build stops which attack -------------------------------------------------------------
say "attack catalogue (tests/attacks): which build stops which attack"
attack_outputs=()
for pair in build:release build-secure:secure build-debug:debug; do
  dir=${pair%%:*}
  if [ -x "$dir/tests/attacks/attacks" ]; then
    "$dir/tests/attacks/attacks" "${pair##*:}" > "$dir/attacks.txt" 2>/dev/null
    attack_outputs+=("$dir/attacks.txt")
  fi
done
# upstream mimalloc 2.4.1's secure build beside ours, when a copy is kept beside the checkout
# (or ATTACK_MIMALLOC_241_SECURE=PATH): the shared-library catalogue with it in LD_PRELOAD. Its
# column only reports; nothing is expected of it.
peer=${ATTACK_MIMALLOC_241_SECURE:-../shared/peers/mimalloc-2.4.1/libmimalloc-secure.so.2}
if [ -f "$peer" ] && [ -x build/tests/attacks/attacks-shared ]; then
  LD_PRELOAD=$(realpath "$peer") build/tests/attacks/attacks-shared mimalloc-2.4.1-secure \
    > build/attacks-mimalloc-2.4.1-secure.txt 2>/dev/null
  attack_outputs+=(build/attacks-mimalloc-2.4.1-secure.txt)
else
  echo "note: no mimalloc 2.4.1 secure build at $peer: its column is left out"
fi
python3 scripts/attack-table.py "${attack_outputs[@]}" || true

# ---- the closing line -------------------------------------------------------------------------
say "summary"
if ! command -v python3 >/dev/null 2>&1; then
  echo "python3 is missing: cannot sum the test logs"
  echo "0 passed, 1 failed"
  exit 1
fi
python3 scripts/testlog-summary.py "${failed_stages[@]}" "${logs[@]}"
