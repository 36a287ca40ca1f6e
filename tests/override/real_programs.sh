#!/usr/bin/env bash
# real_programs.sh LIBRARY [WORKLOAD...]
#
# Runs real programs once without and once with LD_PRELOAD=LIBRARY and compares their output
# (stdout and exit status) byte for byte. Workloads: python3 (dicts and lists built and dropped,
# with PYTHONMALLOC=malloc so every object goes through malloc), perl (hash and string work),
# sqlite3 (create/insert/select on :memory:), git (--version, init, commit, log in a temporary
# repository) and sort (on a generated file). With no workload named, all of them run.
#
# Exit status: 0 all compared equal; 1 a difference, a crash or a failed preload; 77 (skip)
# when none of the requested programs is installed.
set -u

if [ $# -lt 1 ]; then
  echo "usage: $0 LIBRARY [python3|perl|sqlite3|git|sort ...]" >&2
  exit 2
fi
lib=$1
shift
workloads=("$@")
[ ${#workloads[@]} -eq 0 ] && workloads=(python3 perl sqlite3 git sort)

case "$lib" in /*) ;; *) lib="$PWD/$lib" ;; esac
if [ ! -r "$lib" ]; then
  echo "FAIL: library $lib not found"
  echo "0 passed, 1 failed"
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lm-real-programs.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
export LC_ALL=C
unset LD_PRELOAD

passed=0
failed=0
skipped=0

# The preload must really happen: a preloaded grep finds the library in its own mappings (which
# name the file itself, not a symlink to it).
libname=$(basename "$(readlink -f "$lib")")
if ! LD_PRELOAD="$lib" grep -q -F "$libname" /proc/self/maps 2>"$tmp/preload.err"; then
  echo "FAIL: LD_PRELOAD=$lib does not map the library:"
  cat "$tmp/preload.err"
  echo "0 passed, 1 failed"
  exit 1
fi

# ---- workloads: each writes its result to stdout --------------------------------------------

cat >"$tmp/work.py" <<'EOF'
import hashlib
h = hashlib.sha256()
d = {}
for i in range(200000):
    d["k%d" % i] = [i, str(i) * (i % 7), {"x": i, "y": [i] * (i % 5)}]
for i in range(0, 200000, 3):
    del d["k%d" % i]
for k, v in d.items():
    h.update(("%s:%d:%s" % (k, v[0], v[1])).encode())
lists = [list(range(i % 1000)) for i in range(3000)]
total = sum(sum(l) for l in lists)
del lists
blobs = [bytearray(b"z" * (1 << (i % 22))) for i in range(200)]
total += sum(len(b) for b in blobs)
del blobs
words = " ".join(str(i * 7919 % 100003) for i in range(100000)).split()
words.sort()
h.update(",".join(words[:1000]).encode())
print(len(d), total, h.hexdigest())
EOF

cat >"$tmp/work.pl" <<'EOF'
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);
my %h;
for my $i (1 .. 200000) { $h{"key$i"} = ("v" x ($i % 50)) . $i; }
delete $h{"key$_"} for grep { $_ % 3 == 0 } 1 .. 200000;
my $joined = join(",", map { "$_=$h{$_}" } sort keys %h);
my $big = "abc" x 2_000_000;
(my $edited = $big) =~ s/b/BB/g;
my @parts = split /c/, $edited;
my @sorted = sort { $a <=> $b } map { ($_ * 7919) % 100003 } 1 .. 100000;
print scalar(keys %h), " ", length($joined), " ", md5_hex($joined), " ",
      length($edited), " ", scalar(@parts), " ", md5_hex(join(":", @sorted)), "\n";
EOF

cat >"$tmp/work.sql" <<'EOF'
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, payload BLOB);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
INSERT INTO t(id, name, grp, payload) SELECT x, 'name-' || x, x % 97, zeroblob(x % 300) FROM c;
CREATE INDEX t_grp ON t(grp, name);
SELECT count(*), sum(length(payload)), max(name) FROM t;
SELECT grp, count(*), min(name), max(id) FROM t GROUP BY grp ORDER BY grp LIMIT 10;
DELETE FROM t WHERE id % 3 = 0;
SELECT count(*), total(id) FROM t;
SELECT group_concat(name, ',') FROM (SELECT name FROM t WHERE grp = 5 ORDER BY name LIMIT 50);
EOF

# awk generates the same pseudo-random lines on every run
awk 'BEGIN { x = 12345; for (i = 0; i < 300000; i++) { x = (x * 1103515245 + 12345) % 2147483648;
     printf "%d %s-%d %d\n", x % 100000, "w", x % 977, i } }' >"$tmp/input.txt"

work_python3() { PYTHONMALLOC=malloc PYTHONHASHSEED=0 python3 "$tmp/work.py"; }
work_perl() { perl "$tmp/work.pl"; }
work_sqlite3() { sqlite3 :memory: <"$tmp/work.sql"; }
work_sort() {
  sort "$tmp/input.txt" | cksum
  sort -n -k1,1 -k3,3n "$tmp/input.txt" | cksum
  sort -u -k2,2 "$tmp/input.txt"
  sort -S 64K "$tmp/input.txt" | tail -n 5 # small buffer: temporary files and merging
}
work_git() {
  # $1: a fresh directory for this run; nothing of the user's configuration is read.
  local dir=$1
  mkdir -p "$dir/home"
  (
    export HOME="$dir/home" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
    export GIT_AUTHOR_NAME=tester GIT_AUTHOR_EMAIL=t@example.org
    export GIT_COMMITTER_NAME=tester GIT_COMMITTER_EMAIL=t@example.org
    export GIT_AUTHOR_DATE='2024-01-01T00:00:00Z' GIT_COMMITTER_DATE='2024-01-01T00:00:00Z'
    git --version
    git -c init.defaultBranch=main init -q "$dir/repo" && cd "$dir/repo" || exit 1
    for i in 1 2 3; do
      seq 1 $((i * 5000)) >"file$i.txt"
      git add "file$i.txt"
      git commit -q -m "commit $i"
    done
    git log --format='%H %an %s'
    git log -p --stat | cksum
    git cat-file -p 'HEAD^{tree}'
  )
}

run_one() {
  local name=$1
  if ! command -v "$name" >/dev/null 2>&1; then
    echo "SKIP: $name is not installed"
    skipped=$((skipped + 1))
    return
  fi
  local plain="$tmp/$name.plain" pre="$tmp/$name.preload" rc_plain rc_pre
  "work_$name" "$tmp/$name-plain" >"$plain" 2>"$plain.err"
  rc_plain=$?
  LD_PRELOAD="$lib" "work_$name" "$tmp/$name-preload" >"$pre" 2>"$pre.err"
  rc_pre=$?
  if [ $rc_plain -ne 0 ]; then
    echo "SKIP: $name fails even without the preload (exit $rc_plain):"
    head -n 5 "$plain.err"
    skipped=$((skipped + 1))
  elif [ $rc_pre -ne $rc_plain ]; then
    echo "FAIL: $name exits $rc_pre with LD_PRELOAD, $rc_plain without; stderr:"
    head -n 20 "$pre.err"
    failed=$((failed + 1))
  elif ! cmp -s "$plain" "$pre"; then
    echo "FAIL: $name output differs with LD_PRELOAD:"
    diff "$plain" "$pre" | head -n 20
    failed=$((failed + 1))
  elif grep -q 'cannot be preloaded' "$pre.err"; then
    echo "FAIL: $name: the library was not preloaded:"
    head -n 5 "$pre.err"
    failed=$((failed + 1))
  else
    echo "ok: $name ($(wc -c <"$pre") bytes of identical output)"
    passed=$((passed + 1))
  fi
}

for w in "${workloads[@]}"; do
  case "$w" in
    python3 | perl | sqlite3 | git | sort) run_one "$w" ;;
    *)
      echo "FAIL: unknown workload $w"
      failed=$((failed + 1))
      ;;
  esac
done

echo "$passed passed, $failed failed, $skipped skipped"
if [ $failed -ne 0 ]; then exit 1; fi
if [ $passed -eq 0 ]; then exit 77; fi
exit 0
