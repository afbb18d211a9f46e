#!/usr/bin/env bash
# Sums the per-suite lines "<suite> <passed> <failed>" that tools/run-suite.sh
# appends to build/test-results.txt and prints one line: "N passed, N failed".
# Exit status: 0 only when something passed and nothing failed.
#
#   tools/test-summary.sh [RESULTS_FILE]     (default: $TEST_RESULTS or
#                                             build/test-results.txt)
set -euo pipefail
results=${1:-${TEST_RESULTS:-build/test-results.txt}}
passed=0 failed=0
if [[ -r $results ]]; then
  while read -r _suite p f _; do
    [[ $p =~ ^[0-9]+$ && $f =~ ^[0-9]+$ ]] || continue
    passed=$((passed + p))
    failed=$((failed + f))
  done <"$results"
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 && $passed -gt 0 ]]
