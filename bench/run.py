#!/usr/bin/env python3
"""Benchmark runner: every workload under every allocator; time, memory, latency, charts.

    python3 bench/run.py                 # full suite, 5 runs per cell
    python3 bench/run.py --quick         # small sizes, 3 runs (about five minutes)
    python3 bench/run.py --quick --workloads real --allocators ours,glibc
    python3 bench/run.py --callgrind --no-timing   # instructions per malloc/free pair only

Two groups of workloads (--workloads takes names and group names; the list is WORKLOADS):
  synthetic  the programs bench/*.c, which call plain malloc/free/realloc and check their own
             data: fastpath-pairs, fastpath-window, churn-1t, churn-2t, prodcons, threadchurn,
             falseshare-active, falseshare-passive, reallocgrow, large, burst, tree, traverse,
             server, threads-16, threads-64, grow (64 buffers grown by realloc to 2 MiB),
             burst-alternating (1M objects of 32..96 bytes, freed forward and in reverse by
             turns), larson (threads that hand their live objects to a fresh thread) and
             exchange (32 short-lived threads a round trade blocks through a shared table);
  container  cgroupswing: a live set that swings between size classes under a simulated
             cgroup memory limit (a tree the runner writes; the program writes its RSS into
             the simulated memory.current, and reports the share of samples over the limit);
  real       real programs: gcc (gcc -O2 -c of a generated C file of 1,200 functions), perl
             (a 200k-key hash of arrays), python3 (bench/pydict.py, the dict/list workload of
             scripts/main-job.sh, with PYTHONMALLOC=malloc), sqlite3 (main-job's in-memory
             database), sqlite3-insert (1M inserts into an indexed in-memory table), and
             cxx-threads (bench/cxxthreads.cpp: std::thread, std::string, std::unordered_map
             and std::shared_ptr handed between threads). Their inputs are generated into a
             temporary folder before the runs (not timed); a program that is not installed (or
             a C++ workload without a C++ compiler) is skipped with a note. A real program does
             not check itself: every run must print the same as the first run (under any
             allocator), or the run counts as failed.
An allocator is put under every workload with LD_PRELOAD (a real program's child processes,
such as gcc's cc1 and as, inherit it):
  ours            <build>/libmimalloc.so.2 (this project)
  glibc           no preload
  mimalloc-deb    Debian's libmimalloc2.0
  mimalloc-2.4.1  upstream mimalloc 2.4.1, a build kept beside the checkout in
                  ../shared/peers/mimalloc-2.4.1/libmimalloc.so.2 (or BENCH_MIMALLOC_241=PATH);
                  measured only where it is there, never installed
  jemalloc        Debian's libjemalloc2
  tcmalloc        Debian's libtcmalloc-minimal4
A missing Debian peer is installed with apt-get when the runner is root (--no-install: never),
and otherwise skipped with a note. Before the timed runs each allocator is checked once with a
tiny fastpath run, whose `malloc=PATH` line must name the preloaded library (the real programs
print no such line). Runs are interleaved (A B C A B C ...) so that slow drifts of
the machine spread over every allocator alike. Each run is timed from spawn to exit (wall
clock); the peak RSS is the child's ru_maxrss from wait4 (bench/memtime).

Reported per workload: median wall time, median peak RSS, min-max spreads, and ratios to the
best peer (the fastest, or smallest, allocator other than ours: a peer's ratio is >= 1, ours
is below 1 where it beats every peer); per allocator the geometric means of those ratios.
Then the latency table (bench/latency: p50, p99, p99.99 and max of single malloc and free
calls), and the long-running server's resident memory after each busy phase and each idle
phase (bench/server).

Output, in --results-dir (default bench/results): latest.md (the report, also on stdout;
latest-callgrind.md for a --no-timing run), latest.csv (one row per workload and allocator),
latest-latency.csv, latest-server.csv, time-ratio.svg and memory-ratio.svg (one bar per
allocator and workload; PNG copies as well where rsvg-convert is installed), and
latest-callgrind.csv with --callgrind. Progress goes to stderr. Python 3 standard library
only.
"""

import argparse
import csv
import datetime
import html
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# every C program bench/meson.build builds (memtime: the measuring helper)
WORKLOAD_PROGRAMS = ("fastpath", "churn", "prodcons", "threadchurn", "falseshare", "reallocgrow",
                     "large", "burst", "tree", "traverse", "server", "manythreads", "latency",
                     "grow", "larson", "cgroupswing", "exchange", "memtime")
# the C++ programs: built only where Meson finds a C++ compiler (their workloads are skipped
# with a note elsewhere)
OPTIONAL_PROGRAMS = ("cxxthreads",)


class Workload:
    """A workload built from bench/: runs BIN_DIR/PROG with the full or the quick arguments."""

    def __init__(self, name, prog, full, quick, what, timed=True, group="synthetic"):
        self.name, self.prog, self.full, self.quick, self.what = name, prog, full, quick, what
        self.timed = timed  # False: its wall time includes fixed idle time; left out of the means
        self.group = group  # what --workloads GROUP selects
        self.env = {}  # extra environment variables of the program
        self.same_output = False  # True: every run must print the same (checked in run_matrix)

    def args(self, quick):
        return self.quick if quick else self.full

    def missing(self, bin_dir):
        """None when the workload can run here, else why not (it is then skipped with a note)."""
        if (bin_dir / self.prog).exists():
            return None
        if self.prog in OPTIONAL_PROGRAMS:
            return f"bench/{self.prog} was not built (no C++ compiler found?)"
        return f"{bin_dir / self.prog} was not built"

    def prepare(self, folder, quick):
        """Writes the workload's input files into folder, before the timed runs."""

    def argv(self, bin_dir, folder, quick):
        return [str(bin_dir / self.prog)] + self.args(quick)

    def environment(self, folder):
        """The variables added to the program's environment."""
        return dict(self.env)

    def command(self, quick):
        """The command line as the report shows it."""
        return " ".join([self.prog] + self.args(quick))


class RealProgram(Workload):
    """A workload whose command is an installed program rather than one of bench/.

    programs: where to look for it (absolute paths, or names looked up in PATH), the first
    found is run; none found: the workload is skipped with a note. In the arguments and in env,
    "{in}" stands for the folder of the input files that setup(folder, quick) writes, and
    "{bench}" for bench/. The program checks nothing itself, so every run must print the same
    as the first one (same_output).
    """

    def __init__(self, name, programs, full, quick, what, env=None, setup=None):
        super().__init__(name, programs[0], full, quick, what, group="real")
        self.programs = programs
        self.env = dict(env or {})
        self.setup = setup
        self.same_output = True

    def path(self):
        for prog in self.programs:
            if os.path.isabs(prog):
                if os.access(prog, os.X_OK):
                    return prog
            else:
                found = shutil.which(prog)
                if found:
                    return found
        return None

    def missing(self, bin_dir):
        return None if self.path() else f"{' or '.join(self.programs)} not found"

    def prepare(self, folder, quick):
        if self.setup is not None:
            self.setup(Path(folder), quick)

    @staticmethod
    def fill(text, folder):
        return text.replace("{in}", str(folder)).replace("{bench}", str(ROOT / "bench"))

    def argv(self, bin_dir, folder, quick):
        return [self.path()] + [self.fill(a, folder) for a in self.args(quick)]

    def environment(self, folder):
        return {k: self.fill(v, folder) for k, v in self.env.items()}

    def command(self, quick):
        shown = [os.path.basename(self.programs[0])]
        for a in self.args(quick):
            a = a.replace("{in}", "IN").replace("{bench}", "bench")
            shown.append("'...'" if len(a) > 40 else f"'{a}'" if " " in a else a)
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        return (env + " " if env else "") + " ".join(shown)


class CgroupWorkload(Workload):
    """A workload run over a simulated cgroup tree in its input folder (MIMALLOC_CGROUP_ROOT):
    the program writes the tree's files itself, the runner only names the folder."""

    def __init__(self, name, prog, full, quick, what):
        super().__init__(name, prog, full, quick, what, group="container")

    def prepare(self, folder, quick):
        (Path(folder) / "cgroup").mkdir(exist_ok=True)

    def environment(self, folder):
        return {"MIMALLOC_CGROUP_ROOT": str(Path(folder) / "cgroup")}


# ---- inputs of the real programs (generated before the runs, the same text every time) ------

GCC_FUNCTIONS = (1200, 120)  # full, quick


def gcc_source(functions, seed=1):
    """A C file of `functions` functions of four kinds drawn at random (a fixed seed): a loop
    over an array, a switch, struct arithmetic, string handling."""
    r = random.Random(seed)
    ops = ["+", "-", "*", "^", "|", "&"]
    out = ["/* generated by bench/run.py for the gcc workload */",
           "#include <stddef.h>", "#include <string.h>", "",
           "struct vec { double x, y, z; };",
           "struct item { int id; unsigned flags; struct vec pos, vel; char name[24]; };",
           "struct table { struct item items[64]; size_t n; long sums[8]; };", "",
           "static inline struct vec vadd(struct vec a, struct vec b) {",
           "  struct vec v = {a.x + b.x, a.y + b.y, a.z + b.z};", "  return v;", "}",
           "static inline double vdot(struct vec a, struct vec b) {",
           "  return a.x * b.x + a.y * b.y + a.z * b.z;", "}", ""]
    for i in range(functions):
        kind = r.randrange(4)
        a, b, c = r.randrange(1, 97), r.randrange(1, 13), r.randrange(2, 31)
        o1, o2, o3 = r.choice(ops), r.choice(ops), r.choice(ops)
        if kind == 0:
            out += [f"long f{i}(const int* v, size_t n, long seed) {{",
                    f"  long acc = seed {o1} {a};",
                    "  for (size_t i = 0; i < n; i++) {",
                    f"    long t = (long)v[i] {o2} (long)(i * {b});",
                    f"    if ((t & {c}) == 0) acc += t; else acc = (acc {o3} t) + {a};",
                    "  }",
                    f"  while (acc > {a * 1000}) acc = acc / {b + 1} - {c};",
                    "  return acc;", "}", ""]
        elif kind == 1:
            out += [f"int f{i}(int op, int x, int y) {{", "  switch (op) {"]
            for k in range(r.randrange(4, 12)):
                out.append(f"    case {k * b}: return (x {r.choice(ops)} {r.randrange(1, 1000)}) "
                           f"{r.choice(ops)} (y >> {r.randrange(0, 8)});")
            out += ["    case -1: x += y; /* fall through */", f"    case -2: return x * {a};",
                    f"    default: return x - y + {c};", "  }", "}", ""]
        elif kind == 2:
            out += [f"double f{i}(struct table* t, size_t k, double dt) {{",
                    "  struct item* it = &t->items[k % 64];",
                    f"  it->vel.z -= {a}.0 * dt;",
                    "  it->pos = vadd(it->pos, (struct vec){it->vel.x * dt, it->vel.y * dt, "
                    "it->vel.z * dt});",
                    f"  if (it->pos.z < 0) {{ it->pos.z = -it->pos.z; it->vel.z *= -0.{b}; "
                    f"it->flags |= {1 << (i % 16)}u; }}",
                    f"  t->sums[k % 8] += it->id * {c} + (long)it->flags;",
                    "  return 0.5 * vdot(it->vel, it->vel);", "}", ""]
        else:
            word = "".join(r.choice("abcdefghijklmnopqrstuvwxyz")
                           for _ in range(r.randrange(3, 12)))
            out += [f"size_t f{i}(char* dst, size_t cap, const char* src) {{",
                    "  size_t n = strlen(src);",
                    "  if (n + 1 > cap) n = cap - 1;",
                    "  memcpy(dst, src, n);",
                    "  dst[n] = '\\0';",
                    f"  if (n + {len(word) + 2} < cap && strstr(dst, \"{word}\") == NULL) {{",
                    f"    strcat(dst, \" {word}\");",
                    f"    n += {len(word) + 1};",
                    "  }",
                    f"  const char* hit = strchr(dst, '{word[0]}');",
                    "  return hit ? n + (size_t)(hit - dst) : n;", "}", ""]
    return "\n".join(out)


def setup_gcc(folder, quick):
    (folder / "gcc-input.c").write_text(gcc_source(GCC_FUNCTIONS[1 if quick else 0]))


# perl: a hash of arrays. Fills %h with "k$i" => [number, number, string, [number, string]],
# appends a joined string to every fifth, walks it in key order summing, deletes a third.
PERL_HOA = r"""use strict; use warnings;
my $n = shift; my %h;
for my $i (0 .. $n - 1) {
  $h{"k$i"} = [$i, ($i * 7919) % 1000, "v" . ($i * 31), [$i % 10, "x" x ($i % 23)]];
}
for my $i (grep { $_ % 5 == 0 } 0 .. $n - 1) {
  push @{ $h{"k$i"} }, join(",", map { $_ * $i } 1 .. 4);
}
my ($sum, $len) = (0, 0);
for my $k (sort keys %h) {
  my $a = $h{$k};
  $sum += $a->[0] + $a->[1] + $a->[3][0];
  $len += length($k) + length($a->[2]) + length($a->[3][1]) + (@$a > 4 ? length($a->[4]) : 0);
}
delete $h{"k$_"} for grep { $_ % 3 == 0 } 0 .. $n - 1;
print "perl keys=$n sum=$sum len=$len left=", scalar(keys %h), "\n";
"""

SQLITE_ROWS = (200000, 80000)  # the sqlite3 workload (full: the size of scripts/main-job.sh's)
SQLITE_INSERTS = (1000000, 200000)  # sqlite3-insert


def sqlite_main_job_sql(rows):
    """bench/sqlite3-db.sql (scripts/main-job.sh's sqlite3 workload) with `rows` rows."""
    text = (ROOT / "bench" / "sqlite3-db.sql").read_text()
    return text.replace("@JOIN_IDS@", str(rows // 100)).replace("@ROWS@", str(rows))


def sqlite_insert_sql(rows):
    """`rows` inserts, in one transaction, into a table indexed on a scattered text key."""
    return f"""CREATE TABLE u(id INTEGER PRIMARY KEY, k TEXT NOT NULL, n INTEGER, note TEXT);
CREATE INDEX u_k ON u(k);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
INSERT INTO u(k, n, note) SELECT printf('%08x-%d', (x * 2654435761) % 4294967296, x % 7),
  (x * 40503) % 100003, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26, 1 + x % 11) FROM c;
COMMIT;
SELECT count(*), count(DISTINCT n), min(k), max(k), sum(length(note)) FROM u;
SELECT k FROM u WHERE k >= '80000000' ORDER BY k LIMIT 3;
SELECT sum(id % 1000) FROM u WHERE n BETWEEN 5000 AND 6000;
"""


def setup_sqlite(folder, quick):
    (folder / "sqlite3.sql").write_text(sqlite_main_job_sql(SQLITE_ROWS[1 if quick else 0]))


def setup_sqlite_insert(folder, quick):
    (folder / "sqlite3-insert.sql").write_text(
        sqlite_insert_sql(SQLITE_INSERTS[1 if quick else 0]))


# Sizes: a full run of one workload takes about 0.5-3 s with glibc on a quiet 2-core machine, a
# quick one about 0.1-0.5 s (the server about 1 s, most of it idle by design). Longer at full
# size: grow (about 6 s: 40 rounds of 64 buffers of 2 MiB), gcc (about 5 s), burst-alternating
# (about 3.5 s) and sqlite3-insert (about 3 s). The real programs take 0.3-0.8 s when quick.
WORKLOADS = [
    Workload("fastpath-pairs", "fastpath", ["20000000", "pairs"], ["8000000", "pairs"],
             "malloc/free pairs of 8..512 bytes"),
    Workload("fastpath-window", "fastpath", ["40000000", "window", "64"],
             ["12000000", "window", "64"], "64 live blocks in a ring, 8..512 bytes"),
    Workload("churn-1t", "churn", ["4000000", "1", "100000"], ["800000", "1", "100000"],
             "random working set of 100k objects, sizes skewed small, 1 thread"),
    Workload("churn-2t", "churn", ["4000000", "2", "100000"], ["800000", "2", "100000"],
             "the same with 2 threads and cross-thread frees"),
    Workload("prodcons", "prodcons", ["4000000", "1"], ["1500000", "1"],
             "one thread allocates, another frees (every free remote)"),
    Workload("threadchurn", "threadchurn", ["80", "4", "4000", "10000"],
             ["24", "4", "4000", "5000"],
             "slot arrays handed to fresh threads every round (thread exit, abandonment)"),
    Workload("falseshare-active", "falseshare", ["500000", "2", "64", "active"],
             ["100000", "2", "64", "active"], "2 threads allocate 8..64 bytes and write them hard"),
    Workload("falseshare-passive", "falseshare", ["500000", "2", "64", "passive"],
             ["100000", "2", "64", "passive"],
             "the same, starting from blocks the main thread allocated side by side"),
    Workload("reallocgrow", "reallocgrow", ["16", "16384"], ["10", "8192"],
             "a vector and 8 string builders grown with realloc to megabytes"),
    Workload("large", "large", ["300", "4", "64"], ["100", "4", "64"],
             "4 live blocks of 64 KiB..64 MiB replaced at random, every page touched"),
    Workload("burst", "burst", ["4", "1000000"], ["3", "500000"],
             "1M (quick: 500k) small objects allocated, all freed, repeated"),
    Workload("tree", "tree", ["3", "18"], ["3", "16"],
             "binary trees with labels built, walked and dropped"),
    Workload("traverse", "traverse", ["5", "1000000", "10"], ["3", "300000", "10"],
             "a list of records with payloads walked in allocation order (placement, prefetch)"),
    Workload("server", "server", ["5", "40000", "500", "2", "20000"],
             ["3", "20000", "250", "2", "20000"],
             "busy phases and idle phases (RSS over time; time includes the idle phases)",
             timed=False),
    Workload("threads-16", "manythreads", ["8000000", "16", "64000"], ["1500000", "16", "64000"],
             "16 threads on the cores, working sets and cross-thread frees"),
    Workload("threads-64", "manythreads", ["8000000", "64", "64000"], ["1500000", "64", "64000"],
             "the same with 64 threads"),
    Workload("grow", "grow", ["40", "64", "2048"], ["4", "64", "2048"],
             "64 buffers grown side by side with realloc (1.5x, 977 bytes appended a step) to "
             "2 MiB, then freed; 40 rounds (quick: 4)"),
    Workload("burst-alternating", "burst", ["25", "1000000", "42", "alternating", "32-96"],
             ["4", "1000000", "42", "alternating", "32-96"],
             "1M objects of 32..96 bytes allocated, all freed, forward one round and in reverse "
             "the next; 25 rounds (quick: 4)"),
    Workload("larson", "larson", ["320", "4", "1000", "20000"], ["100", "4", "1000", "20000"],
             "4 threads replace objects of 16..1024 bytes; each thread hands its array to a "
             "fresh thread after 20k operations (objects freed by a later thread)"),
    Workload("exchange", "exchange", ["60", "32", "10"], ["20", "32", "10"],
             "32 threads a round make calloc'd blocks (8 B..5 MiB, checked when freed), trade "
             "them through a shared table of 1,000 slots and exit; half the table outlives each "
             "round (the shape of mimalloc's own stress test)"),
    CgroupWorkload("cgroupswing", "cgroupswing", ["60", "64", "112"], ["30", "64", "112"],
                   "64 MiB live, one size class after another (24 B..300 KiB), under a "
                   "simulated 112 MiB cgroup limit"),
    # real programs (group "real")
    RealProgram("gcc", ("/usr/bin/gcc", "gcc"),
                ["-O2", "-c", "{in}/gcc-input.c", "-o", "{in}/gcc-input.o"],
                ["-O2", "-c", "{in}/gcc-input.c", "-o", "{in}/gcc-input.o"],
                f"gcc -O2 -c of a generated C file of {GCC_FUNCTIONS[0]:,} functions (quick: "
                f"{GCC_FUNCTIONS[1]}): loops, switches, struct arithmetic, string handling",
                env={"LC_ALL": "C"}, setup=setup_gcc),
    RealProgram("perl", ("/usr/bin/perl", "perl"), ["-e", PERL_HOA, "200000"],
                ["-e", PERL_HOA, "80000"],
                "a hash of 200k (quick: 80k) arrays built, walked in key order, a third deleted",
                env={"PERL_HASH_SEED": "0", "PERL_PERTURB_KEYS": "0"}),
    # Debian's own python3: a wrapper earlier in PATH (pyenv's shim) would start other programs
    RealProgram("python3", ("/usr/bin/python3",), ["{bench}/pydict.py", "3", "200000"],
                ["{bench}/pydict.py", "2", "130000"],
                "bench/pydict.py (scripts/main-job.sh's dict/list workload): 3 dicts of 200k "
                "lists (quick: 2 of 130k) built, sorted and dropped, with PYTHONMALLOC=malloc",
                env={"PYTHONMALLOC": "malloc", "PYTHONHASHSEED": "0"}),
    RealProgram("sqlite3", ("/usr/bin/sqlite3", "sqlite3"), [":memory:", ".read {in}/sqlite3.sql"],
                [":memory:", ".read {in}/sqlite3.sql"],
                f"scripts/main-job.sh's in-memory database: {SQLITE_ROWS[0] // 1000}k rows "
                f"(quick: {SQLITE_ROWS[1] // 1000}k), two indexes, group-by, delete, update, join",
                setup=setup_sqlite),
    RealProgram("sqlite3-insert", ("/usr/bin/sqlite3", "sqlite3"),
                [":memory:", ".read {in}/sqlite3-insert.sql"],
                [":memory:", ".read {in}/sqlite3-insert.sql"],
                f"{SQLITE_INSERTS[0] // 1000000}M inserts (quick: {SQLITE_INSERTS[1] // 1000}k) "
                "into an in-memory table indexed on a scattered text key",
                setup=setup_sqlite_insert),
    Workload("cxx-threads", "cxxthreads", ["150000"], ["50000"],
             "C++: 4 std::threads pass std::shared_ptr records (std::string, std::vector) "
             "through mutex-protected queues into std::unordered_maps", group="real"),
]
WORKLOAD_GROUPS = ("synthetic", "container", "real")
LATENCY_FULL = ["2000000", "2", "20000"]
LATENCY_QUICK = ["400000", "2", "20000"]
LATENCY_FIELDS = ["malloc_p50_ns", "malloc_p99_ns", "malloc_p9999_ns", "malloc_max_ns",
                  "free_p50_ns", "free_p99_ns", "free_p9999_ns", "free_max_ns", "timer_ns"]
CALLGRIND_COUNTS = (100000, 600000)
CALLGRIND_MODES = ("pairs", "window")

OURS = "ours"
REF_GLIBC = "glibc"
# (name, library file, Debian package); package None: a local build found by local_peer(),
# never installed
PEERS = [("mimalloc-deb", "libmimalloc.so.2", "libmimalloc2.0"),
         ("mimalloc-2.4.1", "libmimalloc.so.2", None),
         ("jemalloc", "libjemalloc.so.2", "libjemalloc2"),
         ("tcmalloc", "libtcmalloc_minimal.so.4", "libtcmalloc-minimal4")]
# the local builds: (environment variable that names the library, default path next to ROOT)
LOCAL_PEERS = {"mimalloc-2.4.1": ("BENCH_MIMALLOC_241",
                                  ROOT.parent / "shared" / "peers" / "mimalloc-2.4.1" /
                                  "libmimalloc.so.2")}
COLORS = {"ours": "#d62728", "glibc": "#7f7f7f", "mimalloc-deb": "#1f77b4",
          "mimalloc-2.4.1": "#9467bd", "jemalloc": "#2ca02c", "tcmalloc": "#ff7f0e"}
RUN_TIMEOUT_S = 600
MEMTIME = None  # path of the measuring helper, set once the workloads are built


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- finding and installing the allocators ---------------------------------------------------

def lib_dirs():
    dirs = []
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if not multiarch and shutil.which("gcc"):
        try:
            multiarch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True,
                                       text=True, check=False).stdout.strip()
        except OSError:
            multiarch = ""
    if multiarch:
        dirs += [f"/usr/lib/{multiarch}", f"/lib/{multiarch}"]
    dirs += ["/usr/lib64", "/usr/lib", "/usr/local/lib"]
    return dirs


def find_system_lib(names):
    for d in lib_dirs():
        for n in names:
            p = os.path.join(d, n)
            if os.path.exists(p):
                return p
    return None


def install_missing(notes):
    """apt-get installs the peers that are not there, when we are root and apt-get exists."""
    missing = [pkg for _, lib, pkg in PEERS if pkg and not find_system_lib([lib])]
    if not missing:
        return
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return  # allocator_table notes each one as skipped
    log(f"installing the missing peers: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    ok = (run_quiet(["apt-get", "update"], env=env) and
          run_quiet(["apt-get", "install", "-y"] + missing, env=env))
    if not ok:
        notes.append(f"apt-get install {' '.join(missing)} failed")


def allocator_table(build_dir, lib=None):
    """(name, preload path or None, note if unavailable) for every allocator, in report order."""
    table = []
    ours = Path(os.path.abspath(lib)) if lib else build_dir / "libmimalloc.so.2"
    table.append((OURS, str(ours) if ours.exists() else None,
                  None if ours.exists() else f"{ours} not built"))
    table.append((REF_GLIBC, None, None))
    for name, lib, pkg in PEERS:
        if pkg is None:
            table.append((name,) + local_peer(name))
            continue
        p = find_system_lib([lib])
        why = None if p else f"{lib} not found (apt-get install {pkg})"
        if p and is_own_package(p):
            why = (f"{p} is this project's own package (its CI mode installs it): reinstall "
                   f"Debian's, apt-get install --allow-downgrades {pkg}=VERSION (apt-cache "
                   f"policy {pkg} lists it)")
            p = None
        table.append((name, p, why))
    return table


def is_own_package(path):
    """Whether a system library was installed by this project's .deb (which replaces Debian's
    libmimalloc2.0 under the same name): measured as a peer, it would be ours, unnoticed."""
    if not shutil.which("dpkg-query"):
        return False
    real = os.path.realpath(path)
    try:
        owner = subprocess.run(["dpkg-query", "-S", real], capture_output=True, text=True,
                               check=False).stdout.split(":")[0].strip()
        if not owner:
            return False
        maint = subprocess.run(["dpkg-query", "-W", "-f=${Maintainer}", owner],
                               capture_output=True, text=True, check=False).stdout
    except OSError:
        return False
    own = (ROOT / "debian" / "control").read_text(errors="replace")
    m = re.search(r"^Maintainer:\s*(.+)$", own, re.M)
    return bool(m) and m.group(1).strip() == maint.strip()


def local_peer(name):
    """(path, None) of a peer built outside the system, or (None, why it is skipped)."""
    var, default = LOCAL_PEERS[name]
    given = os.environ.get(var)
    if given:
        p = os.path.abspath(given)
        return (p, None) if os.path.isfile(p) else (None, f"{var}={given}: no such file")
    if default.is_file():
        return str(default), None
    return None, f"{default} not found (or set {var}=PATH)"


# ---- building the workloads ------------------------------------------------------------------

def run_quiet(cmd, cwd=None, env=None):
    log("+ " + " ".join(str(c) for c in cmd))
    try:
        r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, check=False)
    except OSError as e:
        log(f"  cannot run: {e}")
        return False
    if r.returncode != 0:
        tail = "\n".join(r.stdout.strip().splitlines()[-15:])
        log(f"  failed (exit {r.returncode}):\n{tail}")
    return r.returncode == 0


def fallback_compile(out_dir, notes):
    """Compile the workloads straight with cc, when the Meson build cannot produce them."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise SystemExit("run.py: no C compiler found to build the workloads")
    out_dir.mkdir(parents=True, exist_ok=True)
    for prog in WORKLOAD_PROGRAMS:
        ok = run_quiet([cc, "-O2", "-std=gnu11", "-fno-builtin-malloc", "-fno-builtin-free",
                        "-fno-builtin-calloc", "-fno-builtin-realloc", "-pthread",
                        "-o", out_dir / prog, ROOT / "bench" / f"{prog}.c", "-ldl", "-lm"])
        if not ok:
            raise SystemExit(f"run.py: cannot compile bench/{prog}.c")
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    for prog in OPTIONAL_PROGRAMS:
        if not cxx or not run_quiet([cxx, "-O2", "-std=c++17", "-fno-builtin-malloc",
                                     "-fno-builtin-free", "-pthread", "-o", out_dir / prog,
                                     ROOT / "bench" / f"{prog}.cpp", "-ldl"]):
            notes.append(f"bench/{prog}.cpp not compiled: "
                         + ("no C++ compiler" if not cxx else "the compiler failed"))
    notes.append(f"workloads compiled directly with `{os.path.basename(cc)} -O2` into "
                 f"{out_dir.relative_to(ROOT) if out_dir.is_relative_to(ROOT) else out_dir} "
                 "(the Meson build did not produce them)")
    return out_dir


def build(build_dir, no_build, notes):
    """Returns (folder that holds the workload executables, whether the library is current).

    When the full build fails, a libmimalloc.so.2 left in the build folder is stale, so the
    caller leaves `ours` out rather than measure an old library.
    """
    bench_out = build_dir / "bench"
    have = all((bench_out / p).exists() for p in WORKLOAD_PROGRAMS)
    if no_build:
        if have:
            return bench_out, True
        return fallback_compile(ROOT / "build-bench", notes), True
    if not (build_dir / "build.ninja").exists():
        if not run_quiet(["meson", "setup", build_dir], cwd=ROOT):
            return fallback_compile(ROOT / "build-bench", notes), False
    if not run_quiet(["ninja", "-C", build_dir]):
        if not run_quiet(["ninja", "-C", build_dir] + [f"bench/{p}" for p in WORKLOAD_PROGRAMS]):
            return fallback_compile(ROOT / "build-bench", notes), False
        try:  # the C++ programs, where the build has them (a C++ compiler was found)
            ninja_file = (build_dir / "build.ninja").read_text()
        except OSError:
            ninja_file = ""
        optional = [f"bench/{p}" for p in OPTIONAL_PROGRAMS if f"build bench/{p}:" in ninja_file]
        if optional:
            run_quiet(["ninja", "-C", build_dir] + optional)
        return bench_out, False
    return bench_out, True


def build_options(build_dir):
    try:
        with open(build_dir / "meson-info" / "intro-buildoptions.json") as f:
            opts = {o["name"]: o["value"] for o in json.load(f)}
        return {k: opts.get(k) for k in ("buildtype", "b_sanitize", "debug", "optimization")}
    except (OSError, ValueError, KeyError):
        return {}


# ---- running one program and measuring it ----------------------------------------------------

def kill_quietly(pid):
    """Kills the process group that measure() started (memtime and the program under it)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def measure(argv, preload, out_path, extra_env=None):
    """Runs argv under bench/memtime; returns (exit code, wall s, peak RSS KiB, CPU s).

    memtime forks and execs the program and waits for it with wait4: started from that small
    process, the program's ru_maxrss is its own peak, not the runner's size (Linux counts the
    pre-exec image in ru_maxrss); for a program that runs others (gcc: cc1, as) it is the
    largest peak among them. The program's stdout and stderr go to out_path; extra_env is added
    to its environment.
    """
    res_path = out_path + ".memtime"
    try:
        os.unlink(res_path)
    except OSError:
        pass
    full = [MEMTIME, "-o", res_path] + (["-p", preload] if preload else []) + ["--"] + argv
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, out_path, flags, 0o644),
               (os.POSIX_SPAWN_DUP2, 1, 2)]
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)  # memtime sets it for the program alone
    env.update(extra_env or {})
    t0 = time.perf_counter()
    pid = os.posix_spawn(full[0], full, env, file_actions=actions, setpgroup=0)
    timer = threading.Timer(RUN_TIMEOUT_S, kill_quietly, (pid,))
    timer.start()
    try:
        _, status, ru = os.wait4(pid, 0)
    except BaseException:  # Ctrl-C: take the run down with us
        kill_quietly(pid)
        raise
    finally:
        timer.cancel()
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    fields = parse_fields(read_text(res_path))
    if "wall_s" not in fields:  # memtime itself died: fall back to the runner's own numbers
        return (rc if rc != 0 else 127), wall, ru.ru_maxrss, ru.ru_utime + ru.ru_stime
    code = int(fields.get("exit", rc))
    cpu = float(fields.get("utime_s", 0)) + float(fields.get("stime_s", 0))
    return code, float(fields["wall_s"]), int(fields.get("maxrss_kib", 0)), cpu


def parse_fields(text):
    fields = {}
    for tok in text.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            fields[k] = v
    return fields


def read_text(path, limit=20000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-limit:]
    except OSError:
        return ""


def provider_of(output):
    for tok in output.split():
        if tok.startswith("malloc="):
            return tok[len("malloc="):]
    return None


def check_allocator(name, preload, bin_dir, tmp):
    """Runs a tiny fastpath under the allocator; returns None if usable, else a note."""
    out = os.path.join(tmp, "check.out")
    rc, _, _, _ = measure([str(bin_dir / "fastpath"), "1000", "window", "8"], preload, out)
    text = read_text(out)
    if rc != 0:
        return f"{name}: sanity run failed (exit {rc}): {text.strip()[-300:]}"
    prov = provider_of(text)
    if prov is None:
        return f"{name}: sanity run printed no malloc provider"
    if preload:
        if os.path.realpath(prov) != os.path.realpath(preload):
            return (f"{name}: LD_PRELOAD={preload} did not take over malloc "
                    f"(malloc comes from {prov})")
    elif "libc.so" not in os.path.basename(prov):
        return f"{name}: expected malloc from libc, got {prov}"
    return None


# ---- formatting ------------------------------------------------------------------------------

def fmt_s(x):
    return f"{x:.3f}" if x < 10 else f"{x:.2f}"


def fmt_mib(kib):
    return f"{kib / 1024:.1f}"


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return None
    return a / b


def fmt_ratio(r):
    return "n/a" if r is None else f"{r:.2f}x"


def geomean(xs):
    xs = [x for x in xs if x is not None and x > 0]
    if not xs:
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def fmt_dur(s):
    s = max(0, int(round(s)))
    return f"{s // 60}:{s % 60:02d}"


def machine_info():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    rev = ""
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src",
                                "include", "meson.build"],
                               capture_output=True, text=True, check=False).stdout.strip()
        if rev and dirty:
            rev += " (with uncommitted changes to the library)"
    except OSError:
        pass
    load = ""
    try:
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        pass
    return {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "host": f"{platform.system()} {platform.release()} {platform.machine()}",
            "cpu": cpu or "unknown", "cores": os.cpu_count(), "rev": rev or "none",
            "load": load or "unknown"}


# ---- timing ----------------------------------------------------------------------------------

class Progress:
    def __init__(self, total):
        self.total, self.k, self.t0 = total, 0, time.perf_counter()

    def step(self, msg):
        self.k += 1
        el = time.perf_counter() - self.t0
        eta = el / self.k * (self.total - self.k)
        log(f"[{self.k:3d}/{self.total} {fmt_dur(el)} eta {fmt_dur(eta)}] {msg}")


def summarize(samples):
    """samples: list of (wall, rss_kib, cpu, output) for the successful runs."""
    times = [s[0] for s in samples]
    rss = [s[1] for s in samples]
    cpu = [s[2] for s in samples]
    return {"n": len(samples), "time_med": statistics.median(times), "time_min": min(times),
            "time_max": max(times), "rss_med": statistics.median(rss), "rss_min": min(rss),
            "rss_max": max(rss), "cpu_med": statistics.median(cpu),
            "outputs": [s[3] for s in samples]}


class Job:
    """One command of the matrix: its name, argv, extra environment, and whether every run must
    print the same (a real program's output is compared with its first run's)."""

    def __init__(self, name, argv, env=None, same_output=False):
        self.name, self.argv, self.env, self.same_output = name, argv, env or {}, same_output


def run_matrix(jobs, allocs, runs, bin_dir, tmp, progress):
    """jobs: list of Job. Interleaved: for each job, runs x (A B C ...).

    Returns (results {(job, alloc): summary}, failures {(job, alloc): text}).
    """
    results, failures, samples = {}, {}, {}
    for job in jobs:
        jname, first = job.name, None  # first: (allocator, output) of the first good run
        for r in range(runs):
            for aname, preload in allocs:  # interleaved: A B C A B C ...
                key = (jname, aname)
                if key in failures and key not in samples:
                    progress.step(f"{jname:18s} {aname:14s} run {r + 1}/{runs}: skipped "
                                  "(failed before)")
                    continue  # failed on its first try: do not waste the remaining runs
                out = os.path.join(tmp, "run.out")
                rc, wall, rss, cpu = measure(job.argv, preload, out, job.env)
                text = read_text(out)
                if rc != 0:
                    failures[key] = f"exit {rc}" if rc > 0 else f"signal {-rc}"
                    progress.step(f"{jname:18s} {aname:14s} run {r + 1}/{runs}: FAILED "
                                  f"({failures[key]}) {text.strip()[-300:]}")
                    continue
                if job.same_output:
                    if first is None:
                        first = (aname, text)
                    elif text != first[1]:
                        failures[key] = f"output differs from the first run's (under {first[0]})"
                        progress.step(f"{jname:18s} {aname:14s} run {r + 1}/{runs}: FAILED "
                                      f"({failures[key]}) {text.strip()[-300:]}")
                        continue
                samples.setdefault(key, []).append((wall, rss, cpu, text))
                progress.step(f"{jname:18s} {aname:14s} run {r + 1}/{runs}: "
                              f"{wall:7.3f} s {rss / 1024:8.1f} MiB")
    for key, s in samples.items():
        results[key] = summarize(s)
        if key in failures:
            failures[key] = f"{len(s)}/{runs} runs ok, a run failed: {failures[key]}"
    return results, failures


def best_peer(workload, allocs, results, field):
    """(name, value) of the peer (not ours) with the lowest median `field`, or (None, None)."""
    best = (None, None)
    for aname, _ in allocs:
        if aname == OURS:
            continue
        s = results.get((workload, aname))
        if s is None:
            continue
        if best[1] is None or s[field] < best[1]:
            best = (aname, s[field])
    return best


def timing_report(workloads, allocs, results, failures):
    """Returns (markdown lines, csv rows, geomeans {alloc: (time, mem, n_time, n_mem)},
    ratios {(workload, alloc): (time ratio, mem ratio)})."""
    names = [a for a, _ in allocs]
    ratios = {}
    rows = []
    detail = ["| workload | allocator | median time (s) | time min–max (s) | "
              "median peak RSS (MiB) | RSS min–max (MiB) | time vs best peer | "
              "RSS vs best peer |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for w in workloads:
        bt_name, bt = best_peer(w.name, allocs, results, "time_med")
        bm_name, bm = best_peer(w.name, allocs, results, "rss_med")
        for aname in names:
            s = results.get((w.name, aname))
            fail = failures.get((w.name, aname))
            if s is None:
                detail.append(f"| {w.name} | {aname} | FAILED: {fail or 'no run'} | | | | | |")
                rows.append({"workload": w.name, "allocator": aname, "runs_ok": 0,
                             "error": fail or "no run"})
                continue
            rt = ratio(s["time_med"], bt)
            rm = ratio(s["rss_med"], bm)
            ratios[(w.name, aname)] = (rt if w.timed else None, rm)
            flag = f" ({fail})" if fail else ""
            dag = "" if w.timed else " †"
            detail.append(
                f"| {w.name}{dag} | {aname}{flag} | {fmt_s(s['time_med'])} | "
                f"{fmt_s(s['time_min'])}–{fmt_s(s['time_max'])} | {fmt_mib(s['rss_med'])} | "
                f"{fmt_mib(s['rss_min'])}–{fmt_mib(s['rss_max'])} | {fmt_ratio(rt)} | "
                f"{fmt_ratio(rm)} |")
            rows.append({"workload": w.name, "allocator": aname, "runs_ok": s["n"],
                         "time_median_s": f"{s['time_med']:.4f}",
                         "time_min_s": f"{s['time_min']:.4f}",
                         "time_max_s": f"{s['time_max']:.4f}",
                         "cpu_median_s": f"{s['cpu_med']:.4f}",
                         "rss_median_kib": s["rss_med"], "rss_min_kib": s["rss_min"],
                         "rss_max_kib": s["rss_max"],
                         "best_peer_time": bt_name or "", "best_peer_rss": bm_name or "",
                         "time_vs_best_peer": "" if rt is None else f"{rt:.4f}",
                         "rss_vs_best_peer": "" if rm is None else f"{rm:.4f}",
                         "time_in_means": int(w.timed), "error": fail or ""})

    geo = {}
    for aname in names:
        tr = [ratios[(w.name, aname)][0] for w in workloads if (w.name, aname) in ratios]
        mr = [ratios[(w.name, aname)][1] for w in workloads if (w.name, aname) in ratios]
        tr = [x for x in tr if x is not None]
        mr = [x for x in mr if x is not None]
        geo[aname] = (geomean(tr), geomean(mr), len(tr), len(mr))

    def matrix(idx, title_field):
        head = "| workload | best peer | " + " | ".join(names) + " |"
        lines = [head, "|---|---|" + "---:|" * len(names)]
        for w in workloads:
            bname, bval = best_peer(w.name, allocs, results, title_field)
            if idx == 0 and not w.timed:
                cells = ["–" for _ in names]
                best = "not scored †"
            else:
                cells = []
                for aname in names:
                    r = ratios.get((w.name, aname))
                    cell = fmt_ratio(r[idx]) if r else "FAILED"
                    cells.append(f"**{cell}**" if aname == OURS and r else cell)
                if bname is None:
                    best = "n/a"
                elif idx == 0:
                    best = f"{bname} {fmt_s(bval)} s"
                else:
                    best = f"{bname} {fmt_mib(bval)} MiB"
            lines.append(f"| {w.name} | {best} | " + " | ".join(cells) + " |")
        cells = []
        for aname in names:
            g = geo[aname][idx]
            cell = fmt_ratio(g)
            cells.append(f"**{cell}**" if aname == OURS else cell)
        lines.append("| **geometric mean** | | " + " | ".join(cells) + " |")
        return lines

    md = (["### Time: median wall time relative to the best peer (lower is better)", ""] +
          matrix(0, "time_med") +
          ["", "### Memory: median peak RSS relative to the best peer (lower is better)", ""] +
          matrix(1, "rss_med") +
          ["", "### All numbers", ""] + detail +
          ["", "† the server's wall time includes its fixed idle phases: it is shown but left "
           "out of the time ratios and means; its memory counts."])
    return md, rows, geo, ratios


def worst_for_ours(workloads, ratios, idx, k=3):
    """The k workloads where ours has the highest ratio to the best peer (0: time, 1: memory)."""
    scored = []
    for w in workloads:
        r = ratios.get((w.name, OURS))
        if r is not None and r[idx] is not None:
            scored.append((r[idx], w.name))
    scored.sort(reverse=True)
    return scored[:k]


# ---- latency and server memory ---------------------------------------------------------------

def latency_report(allocs, results, failures, runs, lat_args):
    md = [f"Per-call latency of malloc and free (`latency {' '.join(lat_args)}`: "
          "2 threads, 20k live objects, 85% of the sizes 8..256 bytes, up to 2 MiB, one "
          "operation in 16 a cross-thread free), in nanoseconds, each figure the median over "
          f"{runs} run(s). Every figure includes the timer's own cost (`timer`). max is the "
          "single slowest call of a run: on a shared 2-core machine it is mostly preemption.",
          "",
          "| allocator | malloc p50 | p99 | p99.99 | max | free p50 | p99 | p99.99 | max | "
          "timer |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = []
    for aname, _ in allocs:
        s = results.get(("latency", aname))
        if s is None:
            md.append(f"| {aname} | FAILED: {failures.get(('latency', aname), 'no run')} "
                      "| | | | | | | | |")
            continue
        per_run = [parse_fields(o) for o in s["outputs"]]
        med = {}
        for f in LATENCY_FIELDS:
            vals = [float(p[f]) for p in per_run if f in p]
            med[f] = statistics.median(vals) if vals else None

        def c(f):
            v = med[f]
            if v is None:
                return "?"
            return f"{v:,.0f}" if v < 1e6 else f"{v / 1e6:,.2f} ms"
        md.append(f"| {aname} | " + " | ".join(c(f) for f in LATENCY_FIELDS) + " |")
        row = {"allocator": aname, "runs": s["n"]}
        row.update({f: "" if med[f] is None else f"{med[f]:.0f}" for f in LATENCY_FIELDS})
        rows.append(row)
    return md, rows


def server_report(allocs, results, server_args):
    phases = int(server_args[0])
    idle_ms = server_args[2] if len(server_args) > 2 else "300"
    md = [f"`server {' '.join(server_args)}`: {phases} busy phases, each followed by the "
          f"expiry of every session and {idle_ms} ms of idle time (heartbeats every 10 ms in "
          "each thread). Resident memory in MiB from /proc/self/statm (median over the runs): "
          "`busy` at the end of a busy phase, `idle` at the end of the idle phase that follows. "
          "`kept` is the last idle RSS as a share of the highest busy RSS: 100% means nothing "
          "went back to the OS while idle.", ""]
    head = "| allocator | peak RSS | " + " | ".join(
        f"busy {p} | idle {p}" for p in range(1, phases + 1)) + " | kept |"
    md += [head, "|---|---:|" + "---:|---:|" * phases + "---:|"]
    rows = []
    for aname, _ in allocs:
        s = results.get(("server", aname))
        if s is None:
            md.append(f"| {aname} | FAILED |" + " |" * (2 * phases + 1))
            continue
        busy = {p: [] for p in range(1, phases + 1)}
        idle = {p: [] for p in range(1, phases + 1)}
        for out in s["outputs"]:
            for line in out.splitlines():
                f = parse_fields(line)
                if line.startswith("server phase=") and "idle_rss_kib" in f:
                    p = int(f["phase"])
                    if p in busy:
                        busy[p].append(int(f["busy_rss_kib"]))
                        idle[p].append(int(f["idle_rss_kib"]))
        mb = {p: statistics.median(v) if v else None for p, v in busy.items()}
        mi = {p: statistics.median(v) if v else None for p, v in idle.items()}
        cells = []
        for p in range(1, phases + 1):
            cells += ["?" if mb[p] is None else fmt_mib(mb[p]),
                      "?" if mi[p] is None else fmt_mib(mi[p])]
        top = max((v for v in mb.values() if v), default=None)
        kept = ratio(mi[phases], top) if mi[phases] else None
        md.append(f"| {aname} | {fmt_mib(s['rss_med'])} | " + " | ".join(cells) +
                  f" | {'?' if kept is None else f'{kept * 100:.0f}%'} |")
        row = {"allocator": aname, "runs": s["n"], "peak_rss_kib": s["rss_med"]}
        for p in range(1, phases + 1):
            row[f"busy{p}_rss_kib"] = "" if mb[p] is None else int(mb[p])
            row[f"idle{p}_rss_kib"] = "" if mi[p] is None else int(mi[p])
        row["kept_pct"] = "" if kept is None else f"{kept * 100:.1f}"
        rows.append(row)
    return md, rows


# ---- charts (SVG written here; PNG through rsvg-convert where it is installed) -------------

def svg_chart(path, title, subtitle, workloads, names, values):
    """Grouped bars on a log2 axis, from 1.0 (the best peer) up (worse) or down (better).

    values: {(workload, allocator): ratio or None}.
    """
    vals = [v for v in values.values() if v]
    lo = min([0.5] + vals)
    hi = max([2.0] + vals)
    lo_e = math.floor(math.log2(lo))
    hi_e = math.ceil(math.log2(hi))
    hi_e = min(hi_e, 6)  # the axis ends at 64x; longer bars are clipped and labelled
    lo_e = max(lo_e, -4)
    left, right, top, bottom = 70, 20, 70, 115
    plot_h = 360
    group_w = max(14 * len(names) + 16, 60)
    width = max(left + right + group_w * len(workloads), 760)
    group_w = (width - left - right) / max(len(workloads), 1)
    height = top + plot_h + bottom

    def y_of(v):
        e = math.log2(v)
        e = min(max(e, lo_e), hi_e)
        return top + plot_h * (hi_e - e) / (hi_e - lo_e)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" '
           'font-size="12">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="24" font-size="16" font-weight="bold">{html.escape(title)}'
           '</text>',
           f'<text x="{left}" y="44" fill="#444">{html.escape(subtitle)}</text>']
    # grid and y labels
    for e in range(lo_e, hi_e + 1):
        v = 2.0 ** e
        y = y_of(v)
        label = f"{v:g}x"
        stroke = "#333" if e == 0 else "#ddd"
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
                   f'stroke="{stroke}" stroke-width="{1.5 if e == 0 else 1}"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    out.append(f'<text x="16" y="{top + plot_h / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 16 {top + plot_h / 2:.0f})">ratio to the best peer '
               '(log scale, lower is better)</text>')
    y1 = y_of(1.0)
    bar_w = (group_w - 16) / max(len(names), 1)
    for gi, w in enumerate(workloads):
        gx = left + gi * group_w + 8
        if w == "geometric mean":
            out.append(f'<line x1="{left + gi * group_w:.1f}" y1="{top}" '
                       f'x2="{left + gi * group_w:.1f}" y2="{top + plot_h}" stroke="#333"/>')
        if gi % 2 == 1:
            out.append(f'<rect x="{left + gi * group_w:.1f}" y="{top}" width="{group_w:.1f}" '
                       f'height="{plot_h}" fill="#000" fill-opacity="0.03"/>')
        for ai, aname in enumerate(names):
            v = values.get((w, aname))
            x = gx + ai * bar_w
            if not v:
                out.append(f'<text x="{x + bar_w / 2:.1f}" y="{y1 - 3:.1f}" font-size="9" '
                           f'text-anchor="middle" fill="{COLORS.get(aname, "#000")}">×</text>')
                continue
            y = y_of(v)
            ytop, h = min(y, y1), abs(y - y1)
            if h < 2.0:  # a ratio of about 1: a short mark on the line
                ytop, h = y1 - 1.0, 2.0
            out.append(f'<rect x="{x:.1f}" y="{ytop:.1f}" width="{bar_w - 1:.1f}" '
                       f'height="{h:.1f}" fill="{COLORS.get(aname, "#000")}">'
                       f'<title>{html.escape(w)} / {html.escape(aname)}: {v:.2f}x</title></rect>')
            if math.log2(v) > hi_e or math.log2(v) < lo_e:
                ty = ytop - 3 if v > 1 else ytop + h + 10
                out.append(f'<text x="{x + bar_w / 2:.1f}" y="{ty:.1f}" font-size="9" '
                           f'text-anchor="middle">{v:.0f}x</text>')
        lx = left + gi * group_w + group_w / 2
        ly = top + plot_h + 12
        out.append(f'<text x="{lx:.1f}" y="{ly}" text-anchor="end" '
                   f'transform="rotate(-40 {lx:.1f} {ly})">{html.escape(w)}</text>')
    # legend
    lx = left
    ly = 58
    for aname in names:
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" '
                   f'fill="{COLORS.get(aname, "#000")}"/>')
        out.append(f'<text x="{lx + 14}" y="{ly}">{html.escape(aname)}</text>')
        lx += 14 + 8 * len(aname) + 18
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")
    png = None
    conv = shutil.which("rsvg-convert")
    if conv:
        png = str(Path(path).with_suffix(".png"))
        if subprocess.run([conv, "-o", png, str(path)], capture_output=True,
                          check=False).returncode != 0:
            png = None
    return png


# ---- callgrind -------------------------------------------------------------------------------

def callgrind_total(out_file):
    with open(out_file) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise ValueError("no summary line in " + out_file)


def run_callgrind(allocs, bin_dir, tmp):
    valgrind = shutil.which("valgrind")
    md = [f"Instructions per malloc/free pair under `valgrind --tool=callgrind`: "
          f"(I({CALLGRIND_COUNTS[1]}) − I({CALLGRIND_COUNTS[0]})) / "
          f"{CALLGRIND_COUNTS[1] - CALLGRIND_COUNTS[0]} iterations of fastpath; "
          "the loop's own work (size choice, two stores, checks) is included.", "",
          "| allocator | " + " | ".join(f"instr/pair ({m})" for m in CALLGRIND_MODES) + " |",
          "|---|" + "---:|" * len(CALLGRIND_MODES)]
    rows = []
    if not valgrind:
        return ["callgrind: valgrind not found (apt-get install valgrind); skipped"], rows
    progress = Progress(len(allocs) * len(CALLGRIND_MODES) * 2)
    for aname, preload in allocs:
        cells = []
        for mode in CALLGRIND_MODES:
            counts = []
            for n in CALLGRIND_COUNTS:
                cg_out = os.path.join(tmp, f"cg.{aname}.{mode}.{n}")
                argv = [valgrind, "--tool=callgrind", f"--callgrind-out-file={cg_out}",
                        str(bin_dir / "fastpath"), str(n), mode]
                if mode == "window":
                    argv.append("64")
                out = os.path.join(tmp, "cg.log")
                rc, wall, _, _ = measure(argv, preload, out)
                if rc != 0:
                    progress.step(f"callgrind {aname} {mode} {n}: FAILED (exit {rc})")
                    counts = None
                    break
                try:
                    counts.append(callgrind_total(cg_out))
                except (OSError, ValueError) as e:
                    progress.step(f"callgrind {aname} {mode} {n}: {e}")
                    counts = None
                    break
                progress.step(f"callgrind {aname:14s} {mode:6s} n={n}: "
                              f"{counts[-1]} instructions ({wall:.1f} s)")
            if counts is None:
                cells.append("FAILED")
                rows.append({"allocator": aname, "mode": mode, "instr_per_pair": "",
                             "error": "failed"})
            else:
                per = (counts[1] - counts[0]) / (CALLGRIND_COUNTS[1] - CALLGRIND_COUNTS[0])
                cells.append(f"{per:.1f}")
                rows.append({"allocator": aname, "mode": mode, "instr_per_pair": f"{per:.2f}",
                             "instr_low": counts[0], "instr_high": counts[1], "error": ""})
        md.append(f"| {aname} | " + " | ".join(cells) + " |")
    return md, rows


def write_csv(path, rows):
    if not rows:
        return False
    fields = []
    for r in rows:
        for k in r:
            if k not in fields:
                fields.append(k)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return True


# ---- main ------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(f"{g} workloads: " + ", ".join(w.name for w in WORKLOADS if w.group == g)
                         for g in WORKLOAD_GROUPS))
    ap.add_argument("--quick", action="store_true",
                    help="small sizes and 3 runs (about five minutes)")
    ap.add_argument("--runs", type=int, default=None, help="runs per workload and allocator "
                    "(default 5, or 3 with --quick)")
    ap.add_argument("--build-dir", default="build", help="Meson build folder (default: build)")
    ap.add_argument("--no-build", action="store_true",
                    help="do not run meson/ninja; use what the build folder has")
    ap.add_argument("--lib", default=None,
                    help="the library measured as `ours` (default: BUILD_DIR/libmimalloc.so.2)")
    ap.add_argument("--no-install", action="store_true",
                    help="never apt-get install a missing peer (skip it with a note)")
    ap.add_argument("--allocators", default=None,
                    help="comma-separated subset of: " + ",".join(
                        [OURS, REF_GLIBC] + [p[0] for p in PEERS]))
    ap.add_argument("--workloads", default=None,
                    help="comma-separated workloads and groups (" + ", ".join(WORKLOAD_GROUPS)
                    + ", all) to run (default: all)")
    ap.add_argument("--callgrind", action="store_true",
                    help="also count instructions per malloc/free pair under callgrind")
    ap.add_argument("--no-timing", action="store_true",
                    help="skip the timed runs (and the latency runs)")
    ap.add_argument("--no-latency", action="store_true", help="skip the latency runs")
    ap.add_argument("--results-dir", default=str(ROOT / "bench" / "results"),
                    help="where the report, CSVs and charts go (default: bench/results)")
    args = ap.parse_args()

    runs = args.runs if args.runs is not None else (3 if args.quick else 5)
    if runs < 1:
        ap.error("--runs must be at least 1")
    build_dir = Path(args.build_dir)
    if not build_dir.is_absolute():
        build_dir = ROOT / build_dir
    workloads = list(WORKLOADS)
    if args.workloads:
        wanted = set(args.workloads.split(","))
        unknown = wanted - {w.name for w in workloads} - set(WORKLOAD_GROUPS) - {"all"}
        if unknown:
            ap.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
        if "all" not in wanted:
            workloads = [w for w in workloads if w.name in wanted or w.group in wanted]

    notes = []
    if not args.no_install:
        install_missing(notes)
    bin_dir, lib_current = build(build_dir, args.no_build, notes)
    global MEMTIME
    MEMTIME = str(bin_dir / "memtime")
    if not args.no_timing:  # a workload whose program is missing here is left out, with a note
        runnable = []
        for w in workloads:
            why = w.missing(bin_dir)
            if why:
                notes.append(f"workload {w.name} skipped: {why}")
                log(f"note: workload {w.name} skipped: {why}")
            else:
                runnable.append(w)
        workloads = runnable

    table = allocator_table(build_dir, args.lib)
    if not lib_current and not args.lib:
        table = [(n, None, f"`ninja -C {build_dir}` failed: the library did not build")
                 if n == OURS else (n, p, m) for n, p, m in table]
    if args.allocators:
        wanted = args.allocators.split(",")
        unknown = set(wanted) - {a[0] for a in table}
        if unknown:
            ap.error(f"unknown allocator(s): {', '.join(sorted(unknown))}")
        table = [a for a in table if a[0] in wanted]

    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    allocs = []
    exit_code = 0
    written = []
    with tempfile.TemporaryDirectory(prefix="lm-bench-") as tmp:
        for name, preload, missing in table:
            if missing:
                notes.append(f"{name} skipped: {missing}")
                log(f"note: {name} skipped: {missing}")
                if name == OURS:
                    exit_code = 1
                continue
            bad = check_allocator(name, preload, bin_dir, tmp)
            if bad:
                notes.append(f"{name} skipped: {bad}")
                log(f"note: {name} skipped: {bad}")
                if name == OURS:
                    exit_code = 1
                continue
            allocs.append((name, preload))
        if not allocs:
            raise SystemExit("run.py: no allocator could be run")
        names = [a for a, _ in allocs]

        info = machine_info()
        opts = build_options(build_dir)
        if opts.get("buildtype") not in (None, "release", "debugoptimized") or \
                opts.get("b_sanitize") not in (None, "none"):
            notes.append(f"the build folder is configured with buildtype={opts.get('buildtype')} "
                         f"b_sanitize={opts.get('b_sanitize')}: numbers for `ours` are not "
                         "representative")
        mode = "quick" if args.quick else "full"
        md = ["# Allocator benchmarks", "",
              f"- date: {info['date']}; revision: {info['rev']}",
              f"- machine: {info['host']}, {info['cpu']}, {info['cores']} cores; load average "
              f"at the start: {info['load']}",
              "- build: " + (", ".join(f"{k}={v}" for k, v in opts.items()) or "unknown"),
              "- allocators: " + ", ".join(
                  f"{n} ({p if p else 'no preload'})" for n, p in allocs)]
        if not args.no_timing:
            md += [f"- mode: {mode}, {runs} runs per cell, interleaved across allocators; wall "
                   "time from fork to exit and peak RSS (ru_maxrss) of the child, from wait4 "
                   "in bench/memtime; the best peer of a workload is the best allocator other "
                   "than ours",
                   "- workloads: " + "; ".join(
                       f"{w.name} = `{w.command(args.quick)}` ({w.what})" for w in workloads)]
        md.append("")
        rows, lat_rows, srv_rows, cg_rows = [], [], [], []
        if not args.no_timing:
            inputs = Path(tmp) / "inputs"
            inputs.mkdir()
            jobs, prepared = [], []
            for w in workloads:
                try:
                    w.prepare(inputs, args.quick)  # input files: written now, not timed
                except (OSError, ValueError) as e:
                    notes.append(f"workload {w.name} skipped: writing its input failed: {e}")
                    exit_code = 1
                    continue
                prepared.append(w)
                jobs.append(Job(w.name, w.argv(bin_dir, inputs, args.quick),
                                w.environment(inputs), w.same_output))
            workloads = prepared
            lat_args = LATENCY_QUICK if args.quick else LATENCY_FULL
            lat_jobs = [] if args.no_latency else [
                Job("latency", [str(bin_dir / "latency")] + lat_args)]
            progress = Progress((len(jobs) + len(lat_jobs)) * runs * len(allocs))
            log(f"timing: {len(jobs)} workloads x {len(allocs)} allocators x {runs} runs"
                + (", then latency" if lat_jobs else ""))
            results, failures = run_matrix(jobs, allocs, runs, bin_dir, tmp, progress)
            tmd, rows, geo, ratios = timing_report(workloads, allocs, results, failures)
            if failures:
                exit_code = 1
            md += ["## Summary", "",
                   "Geometric means of the ratios to the best peer per workload (lower is "
                   "better; 1.00x = as good as the best of the others on every workload):", "",
                   "| allocator | time | peak memory |", "|---|---:|---:|"]
            for n in names:
                t, m, nt, nm = geo[n]
                b = "**" if n == OURS else ""
                md.append(f"| {b}{n}{b} | {b}{fmt_ratio(t)}{b} | {b}{fmt_ratio(m)}{b} |")
            for idx, what in ((0, "time"), (1, "peak memory")):
                worst = worst_for_ours(workloads, ratios, idx)
                if worst:
                    md += ["", f"Ours furthest behind the best peer in {what}: " + ", ".join(
                        f"{w} {r:.2f}x" for r, w in worst) + "."]
            md += [""] + tmd + [""]
            charts = []
            for idx, fname, title in ((0, "time-ratio.svg", "Wall time"),
                                      (1, "memory-ratio.svg", "Peak resident memory")):
                vals = {(w, a): r[idx] for (w, a), r in ratios.items()}
                shown = [w.name for w in workloads if idx == 1 or w.timed]
                shown.append("geometric mean")
                vals.update({("geometric mean", a): geo[a][idx] for a in names})
                sub = (f"median of {runs} runs ({mode} mode), relative to the best peer per "
                       f"workload; {info['date']}, {info['rev']}")
                png = svg_chart(results_dir / fname, f"{title} relative to the best peer",
                                sub, shown, names, vals)
                charts.append(fname)
                written.append(str(results_dir / fname))
                if png:
                    written.append(png)
            md += ["Charts: " + ", ".join(f"[{c}]({c})" for c in charts), ""]
            if any(w.name == "server" for w in workloads):
                smd, srv_rows = server_report(
                    allocs, results, next(w.quick if args.quick else w.full
                                          for w in workloads if w.name == "server"))
                md += ["## Long-running server: resident memory over time", ""] + smd + [""]
            if lat_jobs:
                lres, lfail = run_matrix(lat_jobs, allocs, runs, bin_dir, tmp, progress)
                if lfail:
                    exit_code = 1
                lmd, lat_rows = latency_report(allocs, lres, lfail, runs, lat_args)
                md += ["## Latency of single calls", ""] + lmd + [""]
        if args.callgrind:
            log("callgrind: instructions per malloc/free pair")
            cmd, cg_rows = run_callgrind(allocs, bin_dir, tmp)
            md += ["## Instructions per malloc/free pair (callgrind)", ""] + cmd + [""]
            if any(r.get("error") for r in cg_rows):
                exit_code = 1
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]

    text = "\n".join(md)
    print(text)
    # a callgrind-only run does not overwrite the last timing report
    report = "latest.md" if not args.no_timing else "latest-callgrind.md"
    (results_dir / report).write_text(text + "\n")
    written.insert(0, str(results_dir / report))
    for fname, r in (("latest.csv", rows), ("latest-latency.csv", lat_rows),
                     ("latest-server.csv", srv_rows), ("latest-callgrind.csv", cg_rows)):
        if write_csv(results_dir / fname, r):
            written.append(str(results_dir / fname))
    log("written: " + ", ".join(written))
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
