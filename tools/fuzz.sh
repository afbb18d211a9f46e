#!/usr/bin/env bash
# Runs libFuzzer targets one after another and prints one TAP line each.
#
#   tools/fuzz.sh SECONDS TARGET...     (build/fuzz/fuzz_TARGET, built by make)
#
# Each target starts from its committed corpus host/fuzz/corpus/TARGET (read
# only) and a work corpus build/fuzz/corpus-TARGET that keeps what it finds
# between runs. "ok" gives the executions and the corpus size; a crash, leak
# or timeout is "not ok" with the tail of the log and the reproducer's path
# (build/fuzz/crash-TARGET-*; rerun it with build/fuzz/fuzz_TARGET FILE). FUZZ_DIR
# (default build/fuzz) is where the binaries and work corpora are.
set -uo pipefail
seconds=$1; shift
dir=${FUZZ_DIR:-build/fuzz}
for t in "$@"; do
  bin=$dir/fuzz_$t work=$dir/corpus-$t log=$dir/fuzz_$t.log
  mkdir -p "$work"
  seeds=host/fuzz/corpus/$t
  "$bin" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$dir/crash-$t-" "$work" "$seeds" >"$log" 2>&1
  rc=$?
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  corpus=$(find "$work" -type f | wc -l)
  if [[ $rc -eq 0 ]]; then
    echo "ok - fuzz_$t: ${execs:-?} executions in ${seconds} s, no crash (work corpus $corpus files)"
  else
    echo "not ok - fuzz_$t: exit $rc after ${execs:-?} executions; log $log"
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written|abort' "$log" | head -20 | sed 's/^/# /'
  fi
done
