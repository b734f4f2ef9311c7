#!/usr/bin/env bash
# Long multi-host chaos run: lockagent daemons + real sanlock daemons over one lease directory,
# devcount-style holders, injected faults. Options (see scripts/chaos/multihost.ts):
#   --duration SECONDS (600)  --hosts N (8)  --sanlock-hosts M (1)  --resources K (3)
#   --fault-every SECONDS (20)  --faults LIST  --hold MIN-MAX ms (20-100)  --pause MIN-MAX ms (0-50)
#   --long-hold PCT:MIN-MAX ms  --term-delay MS  --contenders C (0 = all hosts)  --dir DIR
# Prints acquisitions, faults injected, overlaps and the log directory; exit 1 on any overlap.
# Needs root for the sanlock hosts, the native addon (npm run build:native) and sanlock 3.8.5.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
[ -f native/build/Release/lockagent_native.node ] || npm run build:native
# A private build of the CLI and of this script, so a concurrent `npm run build` cannot change
# the code under a running daemon (an `npm ci` during the run removes it: restarts then fail).
# Compiled with rootDir = the repository, so that paths between src/, test/helpers/ and
# scripts/ stay as they are.
cache="$root/node_modules/.cache/lockagent-chaos"
out="$cache/build-$(date +%s)-$$"
# builds of runs older than a day
[ -d "$cache" ] && find "$cache" -maxdepth 1 -name 'build-*' -mmin +1440 -exec rm -rf {} +
mkdir -p "$out"
cfg="$cache/tsconfig-$$.json"
cat > "$cfg" <<JSON
{
  "extends": "$root/tsconfig.json",
  "compilerOptions": { "rootDir": "$root", "outDir": "$out", "sourceMap": false, "incremental": false, "noEmit": false },
  "files": ["$root/src/cli/main.ts", "$root/scripts/chaos/multihost.ts"],
  "include": []
}
JSON
trap 'rm -f "$cfg"' EXIT
node "$root/node_modules/typescript/bin/tsc" -p "$cfg"
export LOCKAGENT_CLI="$out/src/cli/main.js"
exec node "$out/scripts/chaos/multihost.js" "$@"
