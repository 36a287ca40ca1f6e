#!/usr/bin/env python3
"""Benchmark runner: each workload under each allocator, wall time and peak RSS.

    python3 bench/run.py [--quick] [--runs N] [--callgrind] [--no-timing] ...

The workloads (bench/fastpath.c, bench/churn.c) call plain malloc/free; an allocator is put
under them with LD_PRELOAD:
  ours          <build>/libmimalloc.so.2 (this project)
  glibc         no preload
  mimalloc-deb  Debian's libmimalloc2.0
  jemalloc      Debian's libjemalloc2
  tcmalloc      Debian's libtcmalloc-minimal4
An allocator that is not there is skipped with a note. Runs are interleaved (A B C A B C ...)
so that slow drifts of the machine spread over every allocator alike. Each run is timed from
spawn to exit (wall clock); the peak RSS is the child's ru_maxrss from wait4.

The report (a Markdown table) goes to stdout and to bench/results/latest.md, the raw numbers
to bench/results/latest.csv; progress goes to stderr. --callgrind also counts instructions per
malloc/free pair under valgrind's callgrind (two iteration counts, differenced, so that startup
cancels out). Python 3 standard library only.
"""

import argparse
import csv
import datetime
import json
import os
import platform
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
WORKLOAD_PROGRAMS = ("fastpath", "churn", "memtime")  # memtime: the measuring helper

# name -> (program, args); sizes chosen so one full run of one workload takes about 0.5-3 s with
# glibc on a 2-core machine, and a --quick run of the whole suite about a minute.
WORKLOADS_FULL = [
    ("fastpath-pairs", "fastpath", ["20000000", "pairs"]),
    ("fastpath-window", "fastpath", ["40000000", "window", "64"]),
    ("churn-1t", "churn", ["4000000", "1", "100000"]),
    ("churn-2t", "churn", ["4000000", "2", "100000"]),
]
WORKLOADS_QUICK = [
    ("fastpath-pairs", "fastpath", ["8000000", "pairs"]),
    ("fastpath-window", "fastpath", ["16000000", "window", "64"]),
    ("churn-1t", "churn", ["1500000", "1", "100000"]),
    ("churn-2t", "churn", ["1500000", "2", "100000"]),
]
CALLGRIND_COUNTS = (100000, 600000)
CALLGRIND_MODES = ("pairs", "window")

REF_MIMALLOC = "mimalloc-deb"
REF_GLIBC = "glibc"
RUN_TIMEOUT_S = 600
MEMTIME = None  # path of the measuring helper, set once the workloads are built


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- finding things --------------------------------------------------------------------------

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


def allocator_table(build_dir):
    """(name, preload path or None, note if unavailable) for every allocator, in report order."""
    table = []
    ours = build_dir / "libmimalloc.so.2"
    table.append(("ours", str(ours) if ours.exists() else None,
                  None if ours.exists() else f"{ours} not built"))
    table.append((REF_GLIBC, None, None))
    for name, libs, pkg in [(REF_MIMALLOC, ["libmimalloc.so.2"], "libmimalloc2.0"),
                            ("jemalloc", ["libjemalloc.so.2"], "libjemalloc2"),
                            ("tcmalloc", ["libtcmalloc_minimal.so.4"], "libtcmalloc-minimal4")]:
        p = find_system_lib(libs)
        table.append((name, p, None if p else f"{libs[0]} not found (apt-get install {pkg})"))
    return table


# ---- building the workloads ------------------------------------------------------------------

def run_quiet(cmd, cwd=None):
    log("+ " + " ".join(str(c) for c in cmd))
    try:
        r = subprocess.run([str(c) for c in cmd], cwd=cwd, stdout=subprocess.PIPE,
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
                        "-o", out_dir / prog, ROOT / "bench" / f"{prog}.c", "-ldl"])
        if not ok:
            raise SystemExit(f"run.py: cannot compile bench/{prog}.c")
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

def child_env(preload):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
    return env


def kill_quietly(pid):
    """Kills the process group that measure() started (memtime and the program under it)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def measure(argv, preload, out_path):
    """Runs argv under bench/memtime; returns (exit code, wall seconds, peak RSS KiB).

    memtime forks and execs the program and waits for it with wait4: started from that small
    process, the program's ru_maxrss is its own peak, not the runner's size (Linux counts the
    pre-exec image in ru_maxrss). The program's stdout and stderr go to out_path.
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
    env = child_env(None)
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
    fields = {}
    for tok in read_text(res_path).split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            fields[k] = v
    if "wall_s" not in fields:  # memtime itself died: fall back to the runner's own numbers
        return (rc if rc != 0 else 127), wall, ru.ru_maxrss
    code = int(fields.get("exit", rc))
    return code, float(fields["wall_s"]), int(fields.get("maxrss_kib", 0))


def read_text(path, limit=2000):
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
    rc, _, _ = measure([str(bin_dir / "fastpath"), "1000", "window", "8"], preload, out)
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


# ---- reporting -------------------------------------------------------------------------------

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
    except OSError:
        pass
    return {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "host": f"{platform.system()} {platform.release()} {platform.machine()}",
            "cpu": cpu or "unknown", "cores": os.cpu_count(), "rev": rev or "none"}


def summarize(samples):
    """samples: list of (wall, rss_kib) for the successful runs."""
    times = [s[0] for s in samples]
    rss = [s[1] for s in samples]
    return {"n": len(samples), "time_med": statistics.median(times), "time_min": min(times),
            "time_max": max(times), "rss_med": statistics.median(rss), "rss_min": min(rss),
            "rss_max": max(rss)}


def timing_report(workloads, allocs, results, failures):
    rows = []
    md = ["| workload | allocator | median time (s) | time min–max (s) | median peak RSS (MiB) "
          "| RSS min–max (MiB) | time vs mimalloc-deb | time vs glibc |",
          "|---|---|---:|---:|---:|---:|---:|---:|"]
    for wname, _, _ in workloads:
        ref = {r: results.get((wname, r)) for r in (REF_MIMALLOC, REF_GLIBC)}
        for aname, _ in allocs:
            s = results.get((wname, aname))
            fail = failures.get((wname, aname))
            if s is None:
                md.append(f"| {wname} | {aname} | FAILED: {fail or 'no run'} | | | | | |")
                rows.append({"workload": wname, "allocator": aname, "runs_ok": 0,
                             "error": fail or "no run"})
                continue
            rm = ratio(s["time_med"], ref[REF_MIMALLOC]["time_med"] if ref[REF_MIMALLOC] else None)
            rg = ratio(s["time_med"], ref[REF_GLIBC]["time_med"] if ref[REF_GLIBC] else None)
            mm = ratio(s["rss_med"], ref[REF_MIMALLOC]["rss_med"] if ref[REF_MIMALLOC] else None)
            mg = ratio(s["rss_med"], ref[REF_GLIBC]["rss_med"] if ref[REF_GLIBC] else None)
            flag = f" ({fail})" if fail else ""
            md.append(f"| {wname} | {aname}{flag} | {fmt_s(s['time_med'])} | "
                      f"{fmt_s(s['time_min'])}–{fmt_s(s['time_max'])} | {fmt_mib(s['rss_med'])} | "
                      f"{fmt_mib(s['rss_min'])}–{fmt_mib(s['rss_max'])} | {fmt_ratio(rm)} | "
                      f"{fmt_ratio(rg)} |")
            rows.append({"workload": wname, "allocator": aname, "runs_ok": s["n"],
                         "time_median_s": f"{s['time_med']:.4f}",
                         "time_min_s": f"{s['time_min']:.4f}", "time_max_s": f"{s['time_max']:.4f}",
                         "rss_median_kib": s["rss_med"], "rss_min_kib": s["rss_min"],
                         "rss_max_kib": s["rss_max"],
                         "time_vs_mimalloc_deb": "" if rm is None else f"{rm:.4f}",
                         "time_vs_glibc": "" if rg is None else f"{rg:.4f}",
                         "rss_vs_mimalloc_deb": "" if mm is None else f"{mm:.4f}",
                         "rss_vs_glibc": "" if mg is None else f"{mg:.4f}",
                         "error": fail or ""})
    return md, rows


# ---- the two modes ---------------------------------------------------------------------------

def run_timing(workloads, allocs, runs, bin_dir, tmp):
    results, failures, samples = {}, {}, {}
    total = len(workloads) * runs * len(allocs)
    k = 0
    for wname, prog, args in workloads:
        argv = [str(bin_dir / prog)] + args
        for r in range(runs):
            for aname, preload in allocs:  # interleaved: A B C A B C ...
                k += 1
                if (wname, aname) in failures and (wname, aname) not in samples:
                    continue  # failed on its first try: do not waste the remaining runs
                out = os.path.join(tmp, "run.out")
                rc, wall, rss = measure(argv, preload, out)
                if rc != 0:
                    failures[(wname, aname)] = f"exit {rc}" if rc > 0 else f"signal {-rc}"
                    log(f"[{k:3d}/{total}] {wname:16s} {aname:13s} run {r + 1}/{runs}: "
                        f"FAILED ({failures[(wname, aname)]}) {read_text(out, 300).strip()}")
                    continue
                samples.setdefault((wname, aname), []).append((wall, rss))
                log(f"[{k:3d}/{total}] {wname:16s} {aname:13s} run {r + 1}/{runs}: "
                    f"{wall:7.3f} s {rss / 1024:8.1f} MiB")
    for key, s in samples.items():
        results[key] = summarize(s)
        if key in failures:
            failures[key] = f"{len(s)}/{runs} runs ok, a run failed: {failures[key]}"
    return results, failures


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
    total = len(allocs) * len(CALLGRIND_MODES) * 2
    k = 0
    for aname, preload in allocs:
        cells = []
        for mode in CALLGRIND_MODES:
            counts = []
            for n in CALLGRIND_COUNTS:
                k += 1
                cg_out = os.path.join(tmp, f"cg.{aname}.{mode}.{n}")
                argv = [valgrind, "--tool=callgrind", f"--callgrind-out-file={cg_out}",
                        str(bin_dir / "fastpath"), str(n), mode]
                if mode == "window":
                    argv.append("64")
                out = os.path.join(tmp, "cg.log")
                rc, wall, _ = measure(argv, preload, out)
                if rc != 0:
                    log(f"[{k:3d}/{total}] callgrind {aname} {mode} {n}: FAILED (exit {rc})")
                    counts = None
                    break
                try:
                    counts.append(callgrind_total(cg_out))
                except (OSError, ValueError) as e:
                    log(f"[{k:3d}/{total}] callgrind {aname} {mode} {n}: {e}")
                    counts = None
                    break
                log(f"[{k:3d}/{total}] callgrind {aname:13s} {mode:6s} n={n}: "
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
        return
    fields = []
    for r in rows:
        for k in r:
            if k not in fields:
                fields.append(k)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small sizes and 3 runs (about a minute)")
    ap.add_argument("--runs", type=int, default=None, help="runs per workload and allocator "
                    "(default 5, or 3 with --quick)")
    ap.add_argument("--build-dir", default="build", help="Meson build folder (default: build)")
    ap.add_argument("--no-build", action="store_true",
                    help="do not run meson/ninja; use what the build folder has")
    ap.add_argument("--allocators", default=None,
                    help="comma-separated subset of: ours,glibc,mimalloc-deb,jemalloc,tcmalloc")
    ap.add_argument("--workloads", default=None, help="comma-separated subset of the workloads")
    ap.add_argument("--callgrind", action="store_true",
                    help="also count instructions per malloc/free pair under callgrind")
    ap.add_argument("--no-timing", action="store_true", help="skip the timed runs")
    ap.add_argument("--results-dir", default=str(ROOT / "bench" / "results"),
                    help="where latest.md and latest.csv go (default: bench/results)")
    args = ap.parse_args()

    runs = args.runs if args.runs is not None else (3 if args.quick else 5)
    if runs < 1:
        ap.error("--runs must be at least 1")
    build_dir = Path(args.build_dir)
    if not build_dir.is_absolute():
        build_dir = ROOT / build_dir
    workloads = WORKLOADS_QUICK if args.quick else WORKLOADS_FULL
    if args.workloads:
        wanted = args.workloads.split(",")
        unknown = set(wanted) - {w[0] for w in workloads}
        if unknown:
            ap.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
        workloads = [w for w in workloads if w[0] in wanted]

    notes = []
    bin_dir, lib_current = build(build_dir, args.no_build, notes)
    global MEMTIME
    MEMTIME = str(bin_dir / "memtime")

    table = allocator_table(build_dir)
    if not lib_current:
        table = [(n, None, f"`ninja -C {build_dir}` failed: the library did not build")
                 if n == "ours" else (n, p, m) for n, p, m in table]
    if args.allocators:
        wanted = args.allocators.split(",")
        unknown = set(wanted) - {a[0] for a in table}
        if unknown:
            ap.error(f"unknown allocator(s): {', '.join(sorted(unknown))}")
        table = [a for a in table if a[0] in wanted]

    allocs = []
    with tempfile.TemporaryDirectory(prefix="lm-bench-") as tmp:
        for name, preload, missing in table:
            if missing:
                notes.append(f"{name} skipped: {missing}")
                log(f"note: {name} skipped: {missing}")
                continue
            bad = check_allocator(name, preload, bin_dir, tmp)
            if bad:
                notes.append(f"{name} skipped: {bad}")
                log(f"note: {name} skipped: {bad}")
                continue
            allocs.append((name, preload))
        if not allocs:
            raise SystemExit("run.py: no allocator could be run")

        info = machine_info()
        opts = build_options(build_dir)
        if opts.get("buildtype") not in (None, "release", "debugoptimized") or \
                opts.get("b_sanitize") not in (None, "none"):
            notes.append(f"the build folder is configured with buildtype={opts.get('buildtype')} "
                         f"b_sanitize={opts.get('b_sanitize')}: numbers for `ours` are not "
                         "representative")
        md = ["# Allocator benchmarks", "",
              f"- date: {info['date']}; revision: {info['rev']}",
              f"- machine: {info['host']}, {info['cpu']}, {info['cores']} cores",
              "- build: " + (", ".join(f"{k}={v}" for k, v in opts.items()) or "unknown"),
              "- allocators: " + ", ".join(
                  f"{n} ({p if p else 'no preload'})" for n, p in allocs)]
        if not args.no_timing:
            md += [f"- mode: {'quick' if args.quick else 'full'}, {runs} runs per cell, "
                   "interleaved across allocators; wall time from fork to exit and peak RSS "
                   "(ru_maxrss) of the child, from wait4 in bench/memtime",
                   "- workloads: " + "; ".join(f"{w} = `{p} {' '.join(a)}`"
                                               for w, p, a in workloads)]
        md.append("")
        timing_rows, cg_rows = [], []
        exit_code = 0
        if not args.no_timing:
            log(f"timing: {len(workloads)} workloads x {len(allocs)} allocators x {runs} runs")
            results, failures = run_timing(workloads, allocs, runs, bin_dir, tmp)
            tmd, timing_rows = timing_report(workloads, [(n, p) for n, p in allocs],
                                             results, failures)
            md += ["## Time and peak memory", ""] + tmd + [""]
            if failures:
                exit_code = 1
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
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "latest.md").write_text(text + "\n")
    write_csv(results_dir / "latest.csv", timing_rows)
    write_csv(results_dir / "latest-callgrind.csv", cg_rows)
    log(f"written: {results_dir / 'latest.md'}"
        + (f", {results_dir / 'latest.csv'}" if timing_rows else "")
        + (f", {results_dir / 'latest-callgrind.csv'}" if cg_rows else ""))
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
