/**
 * What the direct commands need from the outside world, injectable for tests: output streams,
 * a way to open lease storage, and the monotonic clock (for `init -z 1`).
 */
import { promises as fsp, Stats } from 'fs';
import { openLeaseStorage, OpenLeaseStorageOptions } from '../io/file-storage';
import { systemClock } from '../lease/clock';
import { UsageError } from '../config/sanlockargs';
import { AgentUnreachable } from '../control/client';
import { LeaseError, resultInfo } from '../ondisk/results';
import type { WritableStorage } from './sanlock-io';

export interface Output {
  /** sanlock-compatible stdout text; latin1 (one char per byte, names are raw disk bytes) */
  out(text: string): void;
  /** stdout JSON (UTF-8) */
  json(value: unknown): void;
  /** one operator line on stderr (UTF-8), newline added */
  err(line: string): void;
}

export interface CliContext {
  output: Output;
  openStorage(path: string, opts: OpenLeaseStorageOptions): Promise<WritableStorage>;
  stat(path: string): Promise<Stats>;
  monotime(): number;
}

export const processOutput: Output = {
  out: (text) => {
    process.stdout.write(Buffer.from(text, 'latin1'));
  },
  json: (value) => {
    process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  },
  err: (line) => {
    process.stderr.write(`${line}\n`);
  },
};

export function defaultContext(): CliContext {
  return {
    output: processOutput,
    openStorage: (path, opts) => openLeaseStorage(path, opts),
    stat: (path) => fsp.stat(path),
    monotime: () => systemClock.monotime(),
  };
}

/** Exit statuses of every lockagent command (the one table; main.ts and docs/cli.md name them). */
export const EXIT_OK = 0;
/** the operation ran and failed (sanlock's `<action> done <rv>` with rv != 0; a sweep with failures) */
export const EXIT_FAILED = 1;
/** the command line was refused before any I/O */
export const EXIT_USAGE = 2;
/** the agent could not be reached at all: nothing was sent, so nothing was done */
export const EXIT_UNREACHABLE = 3;
/** another host (or this one) is sweeping (cleanup) */
export const EXIT_BUSY = 4;
/** the reader of stdout went away: what a shell reports for a process killed by SIGPIPE (128 + 13), as sanlock is there */
export const EXIT_SIGPIPE = 141;

/** `lockagent: LABEL failed: SENTENCE (sanlock RV NAME)`, the code named by resultInfo, whoever gave it. */
function failedLine(label: string, err: LeaseError): string {
  return `lockagent: ${label} failed: ${err.message} (sanlock ${err.rv} ${resultInfo(err.rv).name})`;
}

/**
 * Runs a command's action and sets the exit status it returns. What it throws becomes one line
 * on stderr, never a stack: a UsageError exits 2, an unreachable agent 3, anything else 1.
 * `direct` commands and `client` actions word a failed operation as sanlock's direct commands
 * do ("failed: … (sanlock RV NAME)"); `direct` ones also an unexpected error.
 */
export async function runCommand(ctx: CliContext, setExit: (code: number) => void, label: string, fn: () => Promise<number>, style: { direct?: boolean; client?: boolean } = {}): Promise<void> {
  try {
    setExit(await fn());
  } catch (err) {
    if (err instanceof UsageError) {
      ctx.output.err(`lockagent: ${label}: ${err.message}`);
      setExit(EXIT_USAGE);
    } else if (err instanceof LeaseError) {
      ctx.output.err(style.direct || style.client ? failedLine(label, err) : `lockagent: ${label}: ${err.message}`);
      setExit(err instanceof AgentUnreachable ? EXIT_UNREACHABLE : EXIT_FAILED);
    } else {
      const msg = err instanceof Error ? err.message : String(err);
      if (!style.direct) {
        ctx.output.err(`lockagent: ${label}: ${msg}`);
      } else {
        ctx.output.err(`lockagent: ${label} failed unexpectedly: ${msg.replace(/^lockagent: /, '')}`);
        if (process.env.LOCKAGENT_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
      }
      setExit(EXIT_FAILED);
    }
  }
}
