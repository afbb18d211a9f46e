#!/usr/bin/env bash
# Runs one test suite whose programs print TAP, shows their output, and
# appends "<suite> <passed> <failed>" to $TEST_RESULTS (build/test-results.txt)
# so that `make test` and .ci/run can print one summed line.
#
#   tools/run-suite.sh NAME CMD [ARGS...]      one command
#   tools/run-suite.sh NAME --each PROG...     several programs, one after another
#
# SUITE_WRAPPER (e.g. "valgrind --error-exitcode=9") prefixes each command.
#
# A test counts as passed on "ok", failed on "not ok" (a TAP "# SKIP" or
# "# TODO" counts as failed: a skipped test proves nothing). A program that
# exits non-zero without reporting a failure adds one failure, so a crash is
# never silent. Exit status: 0 when nothing failed.
set -uo pipefail
suite=$1; shift
results=${TEST_RESULTS:-build/test-results.txt}
mkdir -p "$(dirname "$results")"
out=$(mktemp); trap 'rm -f "$out"' EXIT

run() {
  local rc before after
  before=$(grep -cE '^not ok' "$out")
  # shellcheck disable=SC2086
  CMOCKA_MESSAGE_OUTPUT=TAP ${SUITE_WRAPPER:-} "$@" 2>&1 | tee -a "$out"
  rc=${PIPESTATUS[0]}
  after=$(grep -cE '^not ok' "$out")
  if [[ $rc -ne 0 && $after -eq $before ]]; then
    echo "not ok - $* exited with status $rc" | tee -a "$out"
  fi
}

if [[ ${1:-} == --each ]]; then
  shift
  for p in "$@"; do run "$p"; done
else
  run "$@"
fi

passed=$(grep -E '^ok ' "$out" | grep -cvE '# (SKIP|TODO)')
failed=$(( $(grep -cE '^not ok' "$out") + $(grep -E '^ok ' "$out" | grep -cE '# (SKIP|TODO)') ))
echo "$suite $passed $failed" >> "$results"
printf '== suite %s: %d passed, %d failed\n' "$suite" "$passed" "$failed"
[[ $failed -eq 0 && $passed -gt 0 ]]
