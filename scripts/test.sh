#!/usr/bin/env bash
# The README's test command: installs what the tests need (scripts/setup.sh), then lint,
# typecheck and the whole jest suite against the real components (sanlock, libvirtd + QEMU).
# Tests that drive the single libvirtd run one file at a time; the rest run in parallel.
# Prints one closing line "tests: N passed, N failed" that CI reads. Extra args go to jest.
#
# Afterwards it stops what the suite started, and only that: libvirtd, when none answered
# qemu:///system before (the e2e tests start one through scripts/services.sh; left running it
# would answer qemu:///system for whatever runs next on the machine), and every process the tests
# spawned that is still alive (sanlock and lockagent daemons, lease holders of a test that
# crashed). Those are found by a marker in their environment, LOCKAGENT_SUITE_RUN, which only the
# jest runs get and every child inherits.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run lint
npm run typecheck
tmp=$(mktemp -d)
rc=0

libvirtd_before=0
if command -v virsh >/dev/null && virsh -c qemu:///system version >/dev/null 2>&1; then libvirtd_before=1; fi
suite_run="$$-$(date +%s%N)"

# Pids of live processes carrying this run's marker.
suite_procs() {
  local e
  for e in /proc/[0-9]*/environ; do
    grep -qzxF "LOCKAGENT_SUITE_RUN=$suite_run" "$e" 2>/dev/null || continue
    e=${e#/proc/}; echo "${e%/environ}"
  done
}

stop_suite_leftovers() {
  if [ "$libvirtd_before" = 0 ]; then bash scripts/services.sh stop || true; fi
  local left; left=$(suite_procs)
  if [ -n "$left" ]; then
    echo "test.sh: stopping processes the tests left running: $(echo $left)" >&2
    kill -TERM $left 2>/dev/null || true
    sleep 2
    left=$(suite_procs)
    if [ -n "$left" ]; then kill -KILL $left 2>/dev/null || true; fi
  fi
}
trap stop_suite_leftovers EXIT

# Most suites wait on lease timers (io_timeout 1: host_dead is 68 s), not on the CPU: run more of
# them at once than jest's default of cores - 1 (a single worker on a 2-core CI machine).
LOCKAGENT_SUITE_RUN=$suite_run npx jest --maxWorkers="${LOCKAGENT_TEST_WORKERS:-4}" --testPathIgnorePatterns '/test/e2e/' --json --outputFile="$tmp/main.json" "$@" || rc=$?
if [ -d test/e2e ] && [ $# -eq 0 ]; then
  LOCKAGENT_SUITE_RUN=$suite_run npx jest test/e2e --runInBand --json --outputFile="$tmp/e2e.json" || rc=$?
fi
node -e '
  const fs = require("fs");
  let passed = 0, failed = 0, skipped = 0, total = 0;
  for (const f of process.argv.slice(1)) {
    if (!fs.existsSync(f)) { failed++; console.error(`missing jest result ${f}`); continue; }
    const r = JSON.parse(fs.readFileSync(f, "utf8"));
    passed += r.numPassedTests; failed += r.numFailedTests + (r.numRuntimeErrorTestSuites || 0);
    skipped += r.numPendingTests + r.numTodoTests; total += r.numTotalTests;
  }
  console.log(`tests: ${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
  if (total === 0) { console.error("no tests ran"); process.exit(1); }
  if (failed) process.exit(1);
' "$tmp/main.json" $([ -f "$tmp/e2e.json" ] && echo "$tmp/e2e.json") || rc=1
rm -rf "$tmp"
exit $rc
