#!/usr/bin/env python3
"""Compare two builds of the library, or one build under two settings, on the benchmark workloads:
runs are interleaved A B A B, each workload N times; prints median time and peak RSS per
side, the ratio B/A, and the geometric means of the ratios.

    python3 bench/compare.py build/libmimalloc.so.2 build-secure/libmimalloc-secure.so.2 \
        [--runs 5] [--quick] [--build-dir build]
    python3 bench/compare.py build/libmimalloc.so.2 build/libmimalloc.so.2 \
        --env-b MIMALLOC_PURGE_DELAY=0 --workloads threadchurn,exchange,large --control

--env-a/--env-b add a variable to one side's environment (repeatable), --workloads takes
names and groups as bench/run.py does, and --control runs A a second time (A') in the same
interleaving: its ratio A'/A is the noise of this machine for that workload, the yardstick for
B/A (on a shared 2-core machine 5-10% per workload, more for multi-threaded ones). A real
program must print the same in every run, on both sides, as in bench/run.py; the comparison
stops with an error where it does not.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # the workload table and the measuring helper live there


def measure(lib, argv, env, out):
    """(wall s, peak RSS MiB, what the program printed)"""
    code, wall, rss_kib, _ = bench.measure(argv, os.path.abspath(lib), out, env)
    if code != 0:
        raise RuntimeError(f"{argv[0]} exited {code} under {lib}")
    return wall, rss_kib / 1024.0, bench.read_text(out)


def env_pairs(items, ap):
    env = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            ap.error(f"expected VAR=VALUE, got {item!r}")
        env[name] = value
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lib_a")
    ap.add_argument("lib_b")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--env-a", action="append", default=[], metavar="VAR=VALUE")
    ap.add_argument("--env-b", action="append", default=[], metavar="VAR=VALUE")
    ap.add_argument("--workloads", default=None,
                    help="comma-separated workloads and groups (" +
                    ", ".join(bench.WORKLOAD_GROUPS) + "); default: every timed one")
    ap.add_argument("--control", action="store_true",
                    help="also run A a second time, interleaved, to show the noise (A'/A)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    sides = [("A", args.lib_a, env_pairs(args.env_a, ap)),
             ("B", args.lib_b, env_pairs(args.env_b, ap))]
    if args.control:
        sides.append(("A'", args.lib_a, sides[0][2]))
    workloads = [w for w in bench.WORKLOADS if w.timed]
    if args.workloads:
        wanted = set(args.workloads.split(","))
        unknown = wanted - {w.name for w in workloads} - set(bench.WORKLOAD_GROUPS)
        if unknown:
            ap.error(f"unknown or untimed workload(s): {', '.join(sorted(unknown))}")
        workloads = [w for w in workloads if w.name in wanted or w.group in wanted]
    bin_dir = os.path.join(args.build_dir, "bench")
    bench.MEMTIME = os.path.join(bin_dir, "memtime")
    folder = tempfile.mkdtemp(prefix="lm-compare-")  # the real programs' input files
    try:
        rows = compare(workloads, sides, args, bin_dir, folder)
    except RuntimeError as e:  # a run failed or printed other than the first
        print(f"\ncompare.py: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if not rows:
        print("no workload ran")
        return 1
    report(rows, sides, args.runs)
    return 0


def compare(workloads, sides, args, bin_dir, folder):
    """Runs each workload on every side, interleaved; returns [(name, median times, median
    peaks)]."""
    out = os.path.join(folder, "run.out")
    rows = []
    for w in workloads:
        why = w.missing(Path(bin_dir))
        if why:
            print(f"\n{w.name}: skipped ({why})", file=sys.stderr)
            continue
        w.prepare(folder, args.quick)
        argv = w.argv(Path(bin_dir), folder, args.quick)
        times = {name: [] for name, _, _ in sides}
        peaks = {name: [] for name, _, _ in sides}
        first = None  # (side, output) of the first run of a real program
        for i in range(args.runs):
            print(f"\r{w.name}: run {i + 1}/{args.runs}   ", end="", file=sys.stderr, flush=True)
            for name, lib, extra in sides:
                env = w.environment(folder)
                env.update(extra)
                t, m, text = measure(lib, argv, env, out)
                if w.same_output:
                    if first is None:
                        first = (name, text)
                    elif text != first[1]:
                        raise RuntimeError(f"{w.name}: run {i + 1} under {name} printed other "
                                           f"than the first run (under {first[0]})")
                times[name].append(t)
                peaks[name].append(m)
        med_t = {n: statistics.median(v) for n, v in times.items()}
        med_m = {n: statistics.median(v) for n, v in peaks.items()}
        rows.append((w.name, med_t, med_m))
    print("", file=sys.stderr)
    return rows


def report(rows, sides, runs):
    others = [name for name, _, _ in sides[1:]]
    head = "| workload | time A (s) | " + " | ".join(f"{n}/A" for n in others)
    head += " | RSS A (MiB) | " + " | ".join(f"{n}/A" for n in others) + " |"
    print(head)
    print("|---|" + "---:|" * (2 + 2 * len(others)))
    for name, t, m in rows:
        cells = [f"{t['A']:.3f}"] + [f"{t[n] / t['A']:.2f}" for n in others]
        cells += [f"{m['A']:.1f}"] + [f"{m[n] / m['A']:.2f}" for n in others]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    for name, lib, extra in sides:
        env = " ".join(f"{k}={v}" for k, v in extra.items())
        print(f"{name} = {lib}" + (f" with {env}" if env else ""))
    print(f"{runs} interleaved runs per workload, medians")
    for n in others:
        gt = bench.geomean([t[n] / t["A"] for _, t, _ in rows])
        gm = bench.geomean([m[n] / m["A"] for _, _, m in rows])
        print(f"geometric mean {n}/A: time {gt:.3f}, peak RSS {gm:.3f}")


if __name__ == "__main__":
    sys.exit(main())
