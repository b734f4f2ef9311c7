/**
 * What the direct commands need from the outside world, injectable for tests: output streams,
 * a way to open lease storage, and the monotonic clock (for `init -z 1`).
 */
import { promises as fsp, Stats } from 'fs';
import { openLeaseStorage, OpenLeaseStorageOptions } from '../io/file-storage';
import { systemClock } from '../lease/clock';
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

/** Exit statuses of `lockagent direct`. */
export const EXIT_OK = 0;
/** the operation ran and failed (sanlock's `<action> done <rv>` with rv != 0) */
export const EXIT_FAILED = 1;
/** the command line was refused before any I/O */
export const EXIT_USAGE = 2;
