#!/usr/bin/env bash
# The README's test command: installs what the tests need (scripts/setup.sh), then build, lint,
# typecheck and the whole jest suite against the real components. Prints one closing line
# "tests: N passed, N failed" that CI reads.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run lint
npm run typecheck
out=$(mktemp)
rc=0
npx jest --json --outputFile="$out" "$@" || rc=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
  if (r.numTotalTests === 0) { console.error("no tests ran"); process.exit(1); }
' "$out" || rc=1
rm -f "$out"
exit $rc
