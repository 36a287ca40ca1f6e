#!/usr/bin/env bash
# The main job: build the library, then run real programs under it and under the system
# allocator (glibc) side by side, and print the wall time and peak memory of each.
#
#   scripts/main-job.sh [--no-build]
#
# Workloads (each run MAIN_JOB_RUNS times per allocator, default 3, alternating):
#   python3   bench/pydict.py, a dict/list build-and-drop workload, with PYTHONMALLOC=malloc so
#             that every Python object goes through malloc (not only the large ones)
#   sqlite3   bench/sqlite3-db.sql, an in-memory database: 200k inserts, two indexes,
#             group-by, delete, update, join
#   sort      GNU sort of a generated 400k-line text file
# The output of every run is compared with the system allocator's: a difference is an error.
# Then the benchmark suite runs in --quick mode (bench/run.py: synthetic workloads and real
# programs, the latency table and the long-running server's memory over time, under this
# library, glibc, Debian's mimalloc, jemalloc and tcmalloc, and upstream mimalloc 2.4.1 where
# a build of it lies beside the checkout; about five minutes), which writes its report, CSVs and
# charts to bench/results/. Time is wall clock, memory is the peak RSS (ru_maxrss), both
# measured by bench/memtime.
#
# Environment: MAIN_JOB_LIB=path tests another build of the library instead of
# build/libmimalloc.so.2; MAIN_JOB_RUNS=N; MAIN_JOB_SKIP_BENCH=1 leaves out bench/run.py.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD

NO_BUILD=0
for arg in "$@"; do
  case "$arg" in
    --no-build) NO_BUILD=1 ;;
    -h | --help)
      sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "unknown argument: $arg (try --help)" >&2
      exit 2
      ;;
  esac
done
RUNS="${MAIN_JOB_RUNS:-3}"
LIB="${MAIN_JOB_LIB:-$ROOT/build/libmimalloc.so.2}"
case "$LIB" in /*) ;; *) LIB="$ROOT/$LIB" ;; esac

say() { printf '\n==> %s\n' "$*" >&2; }
die() {
  echo "main-job: $*" >&2
  exit 1
}

# ---- what is needed ---------------------------------------------------------------------------
pkgs=()
command -v meson >/dev/null 2>&1 || pkgs+=(meson)
command -v ninja >/dev/null 2>&1 || pkgs+=(ninja-build)
command -v pkg-config >/dev/null 2>&1 || pkgs+=(pkg-config)
command -v gcc >/dev/null 2>&1 || pkgs+=(gcc libc6-dev)
command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
command -v sqlite3 >/dev/null 2>&1 || pkgs+=(sqlite3)
command -v sort >/dev/null 2>&1 || pkgs+=(coreutils)
if command -v pkg-config >/dev/null 2>&1 && ! pkg-config --exists numa 2>/dev/null; then
  pkgs+=(libnuma-dev)
fi
if [ "${MAIN_JOB_SKIP_BENCH:-0}" != 1 ]; then
  # the allocators the benchmark compares with (bench/run.py skips a missing one)
  for pair in libmimalloc.so.2:libmimalloc2.0 libjemalloc.so.2:libjemalloc2 \
    libtcmalloc_minimal.so.4:libtcmalloc-minimal4; do
    found=0
    for f in /usr/lib/*/"${pair%%:*}" /usr/lib/"${pair%%:*}"; do
      [ -e "$f" ] && found=1
    done
    [ "$found" = 1 ] || pkgs+=("${pair#*:}")
  done
fi
if ((${#pkgs[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing: ${pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update && apt-get install -y "${pkgs[@]}"; } >&2 || die "apt-get install failed"
  else
    echo "main-job: missing ${pkgs[*]}: install them (sudo apt-get install -y ${pkgs[*]})," \
      "going on with what is there" >&2
  fi
fi

# ---- build --------------------------------------------------------------------------------------
if [ "$NO_BUILD" = 0 ]; then
  say "build"
  if [ ! -f build/build.ninja ]; then
    meson setup build >&2 || die "meson setup build failed"
  else
    # again: what was installed since the last run (cmocka, say) is found, the options kept
    meson setup --reconfigure build >&2 || die "meson setup --reconfigure build failed"
  fi
  ninja -C build >&2 || die "ninja -C build failed"
fi
[ -f "$LIB" ] || die "$LIB does not exist (build it with: meson setup build && ninja -C build)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/main-job.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$TMP"' EXIT

# the measuring helper and a probe, from the build or compiled here
MEMTIME=build/bench/memtime
FASTPATH=build/bench/fastpath
if [ ! -x "$MEMTIME" ] || [ ! -x "$FASTPATH" ]; then
  CC_BIN=$(command -v cc || command -v gcc || command -v clang) || die "no C compiler"
  "$CC_BIN" -O2 -o "$TMP/memtime" bench/memtime.c || die "cannot compile bench/memtime.c"
  "$CC_BIN" -O2 -fno-builtin-malloc -fno-builtin-free -o "$TMP/fastpath" bench/fastpath.c -ldl ||
    die "cannot compile bench/fastpath.c"
  MEMTIME=$TMP/memtime
  FASTPATH=$TMP/fastpath
fi

# the preload must really take over malloc
probe=$(LD_PRELOAD="$LIB" "$FASTPATH" 1000 window 8) || die "a probe program failed under $LIB"
provider=${probe##*malloc=}
if [ "$(realpath "$provider")" != "$(realpath "$LIB")" ]; then
  die "LD_PRELOAD=$LIB does not take over malloc (malloc comes from $provider)"
fi

# ---- workloads ----------------------------------------------------------------------------------
say "preparing inputs"
# the Python and sqlite3 workloads are bench/run.py's too (one text for both)
sed -e 's/@JOIN_IDS@/2000/g' -e 's/@ROWS@/200000/g' bench/sqlite3-db.sql >"$TMP/work.sql" ||
  die "cannot write the sqlite3 input"
python3 - "$TMP/sort.in" <<'EOF' || die "cannot write the sort input"
import random, sys
r = random.Random(7)
w = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
with open(sys.argv[1], "w") as f:
    for _ in range(400000):
        f.write(" ".join(r.choice(w) + str(r.randrange(100000))
                         for _ in range(r.randrange(1, 8))) + "\n")
EOF

# Debian's own python3: a wrapper earlier in PATH (pyenv's shim is a shell script that starts
# several programs) would put them all under the measured allocator.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
SQLITE=$(command -v sqlite3 || true)
SORT=$(command -v sort)
RESULTS=$TMP/results.txt
: >"$RESULTS"

# measure WORKLOAD ALLOCATOR PRELOAD STDIN PROGRAM [ARGS...]: one run, one line in $RESULTS
measure() {
  local workload=$1 alloc=$2 preload=$3 input=$4
  shift 4
  local pre=()
  [ -n "$preload" ] && pre=(-p "$preload")
  "$MEMTIME" -o "$TMP/mt" "${pre[@]}" -- "$@" <"$input" >"$TMP/out" 2>"$TMP/err"
  local rc=$? line digest
  line=$(cat "$TMP/mt" 2>/dev/null)
  digest=$(sha256sum <"$TMP/out" | cut -c1-16)
  if [ "$rc" != 0 ]; then
    echo "  $workload under $alloc failed (exit $rc): $(tail -c 400 "$TMP/err")" >&2
  fi
  echo "$workload $alloc $digest $line" >>"$RESULTS"
  printf '  %-8s %-12s %s\n' "$workload" "$alloc" "${line#memtime }" >&2
}

run_both() { # WORKLOAD STDIN PROGRAM [ARGS...]
  local workload=$1 input=$2
  shift 2
  say "$workload: $RUNS runs each, alternating"
  for ((r = 0; r < RUNS; r++)); do
    measure "$workload" system "" "$input" "$@"
    measure "$workload" libmimalloc "$LIB" "$input" "$@"
  done
}

export PYTHONMALLOC=malloc PYTHONHASHSEED=0
run_both python3 /dev/null "$PY" "$ROOT/bench/pydict.py"
unset PYTHONMALLOC PYTHONHASHSEED
if [ -n "$SQLITE" ]; then
  run_both sqlite3 "$TMP/work.sql" "$SQLITE" :memory:
else
  echo "main-job: sqlite3 is missing; that workload is left out" >&2
fi
run_both sort /dev/null env LC_ALL=C "$SORT" "$TMP/sort.in"

# ---- the table ----------------------------------------------------------------------------------
say "results"
status=0
python3 - "$RESULTS" "$LIB" "$RUNS" <<'EOF' || status=1
import statistics, sys
path, lib, runs = sys.argv[1], sys.argv[2], sys.argv[3]
rows = {}
order = []
for line in open(path):
    parts = line.split()
    if len(parts) < 3:
        continue
    workload, alloc, digest = parts[:3]
    f = dict(p.split("=", 1) for p in parts[3:] if "=" in p)
    key = (workload, alloc)
    if key not in rows:
        rows[key] = []
        order.append(key)
    rows[key].append((int(f.get("exit", 127)), float(f.get("wall_s", "nan")),
                      int(f.get("maxrss_kib", 0)), digest))
bad = []
print(f"Main job: real programs under the system allocator (glibc) and under libmimalloc")
print(f"({lib}); median of {runs} runs; time = wall clock, memory = peak RSS.")
print()
print("| workload | allocator | median time (s) | time min–max (s) | median peak RSS (MiB) "
      "| time vs system | memory vs system |")
print("|---|---|---:|---:|---:|---:|---:|")
ref = {}
for workload, alloc in order:
    rs = rows[(workload, alloc)]
    ok = [r for r in rs if r[0] == 0]
    if len(ok) != len(rs):
        bad.append(f"{workload} under {alloc}: {len(rs) - len(ok)} of {len(rs)} runs failed")
    if not ok:
        print(f"| {workload} | {alloc} | FAILED | | | | |")
        continue
    t = statistics.median(r[1] for r in ok)
    m = statistics.median(r[2] for r in ok) / 1024
    if alloc == "system":
        ref[workload] = (t, m, {r[3] for r in ok})
        rt = rm = "1.00x"
    else:
        base = ref.get(workload)
        rt = f"{t / base[0]:.2f}x" if base else "n/a"
        rm = f"{m / base[1]:.2f}x" if base else "n/a"
        if base and any(r[3] not in base[2] for r in ok):
            bad.append(f"{workload} under {alloc}: output differs from the system allocator's")
    lo, hi = min(r[1] for r in ok), max(r[1] for r in ok)
    print(f"| {workload} | {alloc} | {t:.3f} | {lo:.3f}–{hi:.3f} | {m:.1f} | {rt} | {rm} |")
print()
for b in bad:
    print(f"PROBLEM: {b}")
sys.exit(1 if bad else 0)
EOF

if [ "${MAIN_JOB_SKIP_BENCH:-0}" != 1 ]; then
  say "benchmark suite (bench/run.py --quick)"
  bench_args=(--quick --lib "$LIB")
  [ "$NO_BUILD" = 1 ] && bench_args+=(--no-build)
  python3 bench/run.py "${bench_args[@]}" || status=1
fi
exit $status
