# Results of a check script, as the scripts outside Meson's test runner report them
# (tests/consumers/run.sh, tests/first-contact.sh, scripts/deb.sh): one line per check on
# stdout, and the same as a Meson test log (one JSON object per line) that
# scripts/testlog-summary.py counts with the others. Sourced, not run:
#
#   RESULTS_PREFIX=consumers RESULTS_WIDTH=17 RESULTS_TAIL=25   (before sourcing; defaults
#                                                                 "", 15, 30)
#   record OK|FAIL|SKIP NAME DETAIL [LOGFILE]   a FAIL shows the end of LOGFILE
#   results_write FILE                          the Meson test log (nothing for "")
#   results_line                                "N passed, N failed[, N skipped]"
passed=0 failed=0 skipped=0
results_json=()

results_json_string() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/ }
  printf '"%s"' "$s"
}

record() {
  local result=$1 name=$2 detail=$3 log=${4:-} width=${RESULTS_WIDTH:-15}
  case $result in
    OK) passed=$((passed + 1)); printf "ok    %-${width}s %s\n" "$name" "$detail" ;;
    SKIP) skipped=$((skipped + 1)); printf "skip  %-${width}s %s\n" "$name" "$detail" ;;
    *) failed=$((failed + 1)); printf "FAIL  %-${width}s %s\n" "$name" "$detail"
       [ -n "$log" ] && [ -f "$log" ] && tail -n "${RESULTS_TAIL:-30}" "$log" | sed 's/^/      | /' ;;
  esac
  results_json+=("{\"name\": $(results_json_string "${RESULTS_PREFIX:+$RESULTS_PREFIX/}$name"), \"result\": \"$result\", \"stdout\": $(results_json_string "$detail")}")
}

results_write() {
  [ -n "$1" ] || return 0
  mkdir -p "$(dirname "$1")" && printf '%s\n' "${results_json[@]}" >"$1"
}

results_line() {
  local line="$passed passed, $failed failed"
  ((skipped)) && line+=", $skipped skipped"
  echo "$line"
}
