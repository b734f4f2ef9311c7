import { mkdirSync } from 'fs';
import { dirname } from 'path';
import winston from 'winston';

/**
 * Agent logging with winston. Levels follow syslog priorities as sanlock's -L/-S do
 * (3 error, 4 warning, 6 info, 7 debug; -1 off), so operators can keep their habits. Expected
 * contention (a lease held by a live host) is logged at info, never as an error.
 */
export type Level = 'error' | 'warning' | 'info' | 'debug';

export interface Logger {
  error(msg: string, meta?: Record<string, unknown>): void;
  warning(msg: string, meta?: Record<string, unknown>): void;
  info(msg: string, meta?: Record<string, unknown>): void;
  debug(msg: string, meta?: Record<string, unknown>): void;
  close(): Promise<void>;
}

const LEVELS = { error: 3, warning: 4, info: 6, debug: 7 } as const;
/** winston's order (0 most severe) */
const RANK = { error: 0, warning: 1, info: 2, debug: 3 } as const;

/** "-L 7" / "debug" → "debug"; -1 or "off" → undefined (disabled). */
export function parseLevel(v: string | number): Level | undefined {
  const s = String(v).trim().toLowerCase();
  if (s === '-1' || s === 'off' || s === 'none') return undefined;
  if (s in LEVELS) return s as Level;
  if (s === 'warn') return 'warning';
  const n = Number(s);
  if (Number.isInteger(n)) {
    if (n <= 3) return 'error';
    if (n <= 5) return 'warning';
    if (n === 6) return 'info';
    return 'debug';
  }
  throw new Error(`invalid log level "${v}": use error, warning, info, debug or a syslog priority 3..7 (-1 = off)`);
}

export interface LoggerOptions {
  /** level for the log file; undefined disables the file */
  fileLevel?: Level;
  file?: string;
  /** level for stderr (journald picks it up under systemd); undefined disables */
  stderrLevel?: Level;
  /** prefix, e.g. the host name, so multi-host tests can tell agents apart */
  tag?: string;
}

export function createLogger(opts: LoggerOptions): Logger {
  const transports: winston.transport[] = [];
  const line = winston.format.printf((info) => {
    const { level, message, timestamp, ...rest } = info as Record<string, unknown>;
    const meta = Object.keys(rest).length ? ' ' + JSON.stringify(rest, (_k, v) => (typeof v === 'bigint' ? String(v) : v)) : '';
    return `${timestamp} ${opts.tag ? opts.tag + ' ' : ''}${String(level).padEnd(7)} ${message}${meta}`;
  });
  const fmt = winston.format.combine(winston.format.timestamp(), line);
  if (opts.file && opts.fileLevel) {
    mkdirSync(dirname(opts.file), { recursive: true });
    transports.push(new winston.transports.File({ filename: opts.file, level: opts.fileLevel, format: fmt }));
  }
  if (opts.stderrLevel) {
    transports.push(new winston.transports.Console({
      level: opts.stderrLevel,
      format: fmt,
      stderrLevels: Object.keys(LEVELS),
    }));
  }
  const w = winston.createLogger({ levels: RANK, transports, silent: transports.length === 0 });
  // A line no transport takes never enters winston: its stream machinery would run for nothing
  // (the acquire path's debug timing line, at every acquire, with the default info level).
  const most = Math.max(-1, ...transports.map((t) => RANK[t.level as Level]));
  const at = (level: Level) => RANK[level] > most ? () => undefined : (msg: string, meta?: Record<string, unknown>) => { w.log(level, msg, meta); };
  return {
    error: at('error'),
    warning: at('warning'),
    info: at('info'),
    debug: at('debug'),
    close: () => new Promise((resolve) => {
      if (transports.length === 0) return resolve();
      w.on('finish', () => resolve());
      w.end();
    }),
  };
}

/** A logger that keeps lines in memory: for tests and for the simulation. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: Level) => (msg: string, meta?: Record<string, unknown>) => { lines.push(`${level} ${msg}${meta ? ' ' + JSON.stringify(meta) : ''}`); };
  return { lines, error: at('error'), warning: at('warning'), info: at('info'), debug: at('debug'), close: async () => undefined };
}
