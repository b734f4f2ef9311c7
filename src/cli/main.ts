#!/usr/bin/env node
/**
 * lockagent command-line entry point (package.json bin). Exit status: 0 success, 1 the
 * operation failed, 2 the command line was refused (nothing was written), 3 the agent could not
 * be reached (agent commands), 4 another sweep is running (cleanup), 141 the reader of stdout
 * went away. docs/operator-guide.md.
 */
import { EXIT_FAILED, EXIT_SIGPIPE } from './context';
import { run } from './program';

/**
 * A reader that went away (`lockagent direct dump FILE | head -1`) ends us quietly with the status
 * sanlock gets there (it dies of SIGPIPE; Node ignores that signal and reports EPIPE instead,
 * which would otherwise surface as an unhandled 'error' event with a stack). Any other failure to
 * write stdout or stderr is one line, if stderr can still take it.
 */
function onOutputError(stream: 'stdout' | 'stderr') {
  return (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(EXIT_SIGPIPE);
    if (stream === 'stdout') {
      try {
        process.stderr.write(`lockagent: writing to stdout failed: ${err.message}\n`);
      } catch {
        // stderr is gone too
      }
    }
    process.exit(EXIT_FAILED);
  };
}
process.stdout.on('error', onOutputError('stdout'));
process.stderr.on('error', onOutputError('stderr'));

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
