#!/usr/bin/env bash
# Build and run the API fuzzer (tests/fuzz/fuzz_api.c) with libFuzzer, ASan and UBSan.
#
#   tests/fuzz/run.sh [--runs N | --time S] [--jobs J] [--log FILE] [-- LIBFUZZER_ARGS...]
#
# Builds build-fuzz/fuzz_api with clang over the single-source library (src/static.c, no libc
# names), then runs it over a copy of the seed corpus (tests/fuzz/corpus/; the copy in
# build-fuzz/corpus/ grows with what the fuzzer finds, the tree's seeds stay as they are).
#   --runs N   stop after N inputs (default 20000: the short form scripts/test.sh runs)
#   --time S   stop after S seconds instead (the long, manual form: e.g. --time 3600)
#   --jobs J   J fuzzing processes side by side (libFuzzer -jobs/-workers; default 1)
#   --log FILE also write the result as a Meson test log line, for scripts/testlog-summary.py
# Prints libFuzzer's last status line (inputs run, coverage) and exits non-zero if it found a
# crash (the input is kept as build-fuzz/crash-*). Exit 77 when clang with libFuzzer is missing.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1

RUNS=20000 TIME="" JOBS=1 LOG=""
while (($#)); do
  case $1 in
    --runs) RUNS=${2:?}; shift 2 ;;
    --time) TIME=${2:?}; shift 2 ;;
    --jobs) JOBS=${2:?}; shift 2 ;;
    --log) LOG=${2:?}; shift 2 ;;
    --) shift; break ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

OUT=build-fuzz
CC=${FUZZ_CC:-clang}
write_log() { # RESULT DURATION
  [ -n "$LOG" ] || return 0
  mkdir -p "$(dirname "$LOG")"
  printf '{"name": "fuzz_api", "result": "%s", "duration": %s}\n' "$1" "$2" > "$LOG"
}

if ! command -v "$CC" >/dev/null 2>&1 ||
  ! echo 'int LLVMFuzzerTestOneInput(const char* d, long n) { return 0; }' |
    "$CC" -x c - -fsanitize=fuzzer -o /dev/null 2>/dev/null; then
  echo "fuzz: $CC with libFuzzer (-fsanitize=fuzzer) is not available: skipped"
  write_log SKIP 0
  exit 77
fi

mkdir -p "$OUT"
echo "fuzz: building $OUT/fuzz_api"
# -DLM_OVERRIDE=0: ASan's malloc serves the C library; the fuzzer reaches ours through mi_.
if ! "$CC" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -DLM_OVERRIDE=0 -DLM_SECURE=0 -DLM_DEBUG=0 -DLM_SECURE_SHUFFLE=0 -DLM_TRACK_VALGRIND=0 \
  -DLM_GUARDED_BUILD=0 -Iinclude -Isrc src/static.c tests/fuzz/fuzz_api.c -lpthread \
  -o "$OUT/fuzz_api" 2> "$OUT/build.log"; then
  cat "$OUT/build.log" >&2
  echo "fuzz: build failed"
  write_log FAIL 0
  exit 1
fi

rm -rf "$OUT/corpus"
mkdir -p "$OUT/corpus"
cp tests/fuzz/corpus/* "$OUT/corpus/"
limit=(-runs="$RUNS")
[ -n "$TIME" ] && limit=(-max_total_time="$TIME")
parallel=()
((JOBS > 1)) && parallel=(-jobs="$JOBS" -workers="$JOBS")
echo "fuzz: $OUT/fuzz_api ${limit[*]} ${parallel[*]} $OUT/corpus"
start=$(date +%s)
rc=0
(cd "$OUT" && ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 \
  ./fuzz_api "${limit[@]}" "${parallel[@]}" -max_len=4096 -print_final_stats=1 \
  "$@" corpus) > "$OUT/fuzz.log" 2>&1 || rc=$?
took=$(($(date +%s) - start))
grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$OUT/fuzz.log" | tail -n 1
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$OUT/fuzz.log"
if [ "$rc" != 0 ]; then
  tail -n 40 "$OUT/fuzz.log"
  echo "fuzz: FAILED (exit $rc) after ${took}s; the input is in $OUT/"
  write_log FAIL "$took"
  exit 1
fi
echo "fuzz: ok after ${took}s"
write_log OK "$took"
