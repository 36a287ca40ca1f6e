#!/usr/bin/env bash
# Smoke test of one benchmark workload: runs it at a tiny size and checks that it completes.
#
#   smoke.sh PROGRAM [ARGS...]
#
# Run by `meson test --suite bench` with LD_PRELOAD set to this project's library. Passes when
# the program exits 0 (each workload checks its own data and exits 1 when a block lost its
# contents) and, when LD_PRELOAD is set, when the program's `malloc=PATH` report names the
# preloaded library (so the test really ran under it). No timing is asserted; a run that takes
# more than 20 s is killed and fails.
set -u
if [ $# -lt 1 ]; then
  echo "usage: $0 PROGRAM [ARGS...]" >&2
  exit 2
fi
prog=$1
shift
out=$(timeout 20 "$prog" "$@" 2>&1)
rc=$?
printf '%s\n' "$out"
if [ "$rc" != 0 ]; then
  echo "smoke: $(basename "$prog") $* exited with status $rc" >&2
  exit 1
fi
if [ -n "${LD_PRELOAD:-}" ]; then
  provider=$(printf '%s\n' "$out" | sed -n 's/.*malloc=\([^ ]*\).*/\1/p' | tail -n 1)
  want=$(realpath "${LD_PRELOAD%% *}")
  if [ -z "$provider" ] || [ "$(realpath "$provider")" != "$want" ]; then
    echo "smoke: malloc came from '${provider:-?}', not from the preloaded $want" >&2
    exit 1
  fi
fi
echo "smoke: $(basename "$prog") $* ok"
