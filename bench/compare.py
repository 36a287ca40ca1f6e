#!/usr/bin/env python3
"""Compare two builds of the library (e.g. release and secure) on the benchmark workloads:
runs are interleaved A B A B, each workload N times; prints median time and peak RSS per
build, the ratio B/A, and the geometric means of the ratios.

    python3 bench/compare.py build/libmimalloc.so.2 build-secure/libmimalloc-secure.so.2 \
        [--runs 5] [--quick] [--build-dir build]
"""
import argparse
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # the workload table and the measuring helper live there


def measure(lib, argv, env):
    code, wall, rss_kib, _ = bench.measure(argv, os.path.abspath(lib), "/tmp/lm-compare.out", env)
    if code != 0:
        raise RuntimeError(f"{argv[0]} exited {code} under {lib}")
    return wall, rss_kib / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lib_a")
    ap.add_argument("lib_b")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--build-dir", default="build")
    args = ap.parse_args()
    bin_dir = os.path.join(args.build_dir, "bench")
    bench.MEMTIME = os.path.join(bin_dir, "memtime")
    folder = tempfile.mkdtemp(prefix="lm-compare-")  # the real programs' input files
    rows, tr, mr = [], [], []
    for w in bench.WORKLOADS:
        if not w.timed:
            continue
        why = w.missing(Path(bin_dir))
        if why:
            print(f"\n{w.name}: skipped ({why})", file=sys.stderr)
            continue
        w.prepare(folder, args.quick)
        argv = w.argv(Path(bin_dir), folder, args.quick)
        env = w.environment(folder)
        ta, tb, ma, mb = [], [], [], []
        for i in range(args.runs):
            print(f"\r{w.name}: run {i + 1}/{args.runs}   ", end="", file=sys.stderr, flush=True)
            t, m = measure(args.lib_a, argv, env)
            ta.append(t); ma.append(m)
            t, m = measure(args.lib_b, argv, env)
            tb.append(t); mb.append(m)
        a, b = statistics.median(ta), statistics.median(tb)
        ra, rb = statistics.median(ma), statistics.median(mb)
        tr.append(b / a); mr.append(rb / ra)
        rows.append((w.name, a, b, b / a, ra, rb, rb / ra))
    print("", file=sys.stderr)
    print(f"| workload | time A (s) | time B (s) | B/A | RSS A (MiB) | RSS B (MiB) | B/A |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.3f} | {r[2]:.3f} | {r[3]:.2f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]:.2f} |")
    gt = math.exp(sum(map(math.log, tr)) / len(tr))
    gm = math.exp(sum(map(math.log, mr)) / len(mr))
    print(f"\nA = {args.lib_a}, B = {args.lib_b}, {args.runs} interleaved runs, medians")
    print(f"geometric mean B/A: time {gt:.3f}, peak RSS {gm:.3f}")


if __name__ == "__main__":
    main()
