#!/usr/bin/env bash
# The README's test command: installs what the tests need (scripts/setup.sh), then lint,
# typecheck and the whole jest suite against the real components (sanlock, libvirtd + QEMU).
# Tests that drive the single libvirtd run one file at a time; the rest run in parallel.
# Prints one closing line "tests: N passed, N failed" that CI reads. Extra args go to jest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run lint
npm run typecheck
tmp=$(mktemp -d)
rc=0
npx jest --testPathIgnorePatterns '/test/e2e/' --json --outputFile="$tmp/main.json" "$@" || rc=$?
if [ -d test/e2e ] && [ $# -eq 0 ]; then
  npx jest test/e2e --runInBand --json --outputFile="$tmp/e2e.json" || rc=$?
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
