#!/usr/bin/env node
/**
 * lockagent command-line entry point (package.json bin). Exit status: 0 success, 1 the
 * operation failed, 2 the command line was refused (nothing was written), 3 the agent could not
 * be reached (agent commands), 4 another sweep is running (cleanup). docs/operator-guide.md.
 */
import { run } from './program';

run(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`lockagent: unexpected error: ${msg}\n`);
    if (process.env.LOCKAGENT_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exitCode = 1;
  },
);
