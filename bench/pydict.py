"""pydict: a Python dict/list build-and-drop workload (bench/run.py's `python3` workload).

    PYTHONMALLOC=malloc python3 bench/pydict.py [ROUNDS=3] [KEYS=200000]

Each round fills a dict with KEYS entries (a formatted string key, a list of an int, a string
and a tuple), sorts the strings of two thirds of them, sums some lengths, and drops it all. It
prints one number, the same under every allocator. With no arguments it is the python3
workload of scripts/main-job.sh. Run it with PYTHONMALLOC=malloc so that every object goes
through malloc (Python's own small-object allocator would hide most of them).
"""
import sys


def main(argv):
    rounds = int(argv[1]) if len(argv) > 1 else 3
    keys = int(argv[2]) if len(argv) > 2 else 200000
    total = 0
    for rnd in range(rounds):
        d = {}
        for i in range(keys):
            d[f"key-{i}-{rnd}"] = [i, str(i) * 3, (i, rnd)]
        words = sorted(v[1] for v in d.values() if v[0] % 3)
        total += len(words) + len(d) + sum(len(w) for w in words[::1000])
        del d, words
    print(total)


if __name__ == "__main__":
    main(sys.argv)
