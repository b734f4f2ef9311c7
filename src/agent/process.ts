import { readFileSync } from 'fs';

/**
 * Which process a pid names. A pid alone is not an identity: after the process exits the
 * kernel hands the number to the next process. pid + start time (/proc/PID/stat field 22, clock
 * ticks since boot) is, within a boot. Every signal the agent sends to an owner and every
 * "does the owner still exist" goes through here.
 */
export interface ProcessId {
  pid: number;
  /** starttime from /proc/PID/stat, in clock ticks since boot */
  startTime: number;
}

/**
 * The process with this pid now, or undefined when there is none. A zombie counts as gone: it
 * runs no code and holds no files, so it uses no lease (its parent just has not reaped it).
 */
export function identify(pid: number): ProcessId | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses; the fields after the last ')' do not.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = rest[0];
  const startTime = Number(rest[19]);
  if (state === 'Z' || state === 'X' || !Number.isFinite(startTime)) return undefined;
  return { pid, startTime };
}

/** True while `id` still names the same running process (not gone, not a reused pid). */
export function isSame(id: ProcessId): boolean {
  return identify(id.pid)?.startTime === id.startTime;
}

/** Whether any process has this pid (EPERM: it exists, we may not signal it). */
export function alive(pid: number | null | undefined): boolean {
  if (!pid || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Still there and the same process as at registration; without a recorded start time, just alive. */
export function stillThere(pid: number, startTime?: number | null): boolean {
  return startTime !== undefined && startTime !== null ? isSame({ pid, startTime }) : alive(pid);
}
