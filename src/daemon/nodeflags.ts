/**
 * The node flags the daemon runs with. One place: the installed `lockagent` wrapper adds them
 * to `lockagent daemon` (scripts/install.sh reads them from here), and the benchmarks and tests
 * that start daemons use them too, so what is measured is what runs.
 *
 * --max-semi-space-size=1: V8 sizes its young generation up to 2 × 16 MiB under load, and the
 * pages stay mapped; the agent's requests allocate little and briefly, so a 1 MiB semi-space
 * costs a few more (sub-millisecond) scavenges and takes ~15 MiB off the daemon's RSS
 * (docs/benchmarks.md). It is a flag of the process start: V8 ignores it once the heap exists.
 *
 * --heap-growing-percent=50: after a full GC, V8 lets the old generation grow up to several
 * times what survived before it marks again; a burst of 1,000 acquires took the heap from 11 to
 * 21 MiB, mostly garbage. At 1.5× the next full GC comes sooner (a few ms with the agent's
 * ~10 MiB heap), which takes 2-3 MiB off the burst's peak RSS at no measurable cost in
 * throughput (docs/benchmarks.md).
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--heap-growing-percent=50'];

/**
 * At most this many glibc malloc arenas for the daemon. glibc gives a thread that meets
 * contention an arena of its own, up to 8 per core, and each keeps what was freed in it; with one
 * I/O thread per open lease file, a burst of 1,000 acquires left several arenas' worth resident.
 * Two keep the JavaScript thread and the I/O threads from contending on one lock; the I/O
 * threads allocate little.
 */
export const MALLOC_ARENAS = 2;

/**
 * The environment the daemon runs with, set by the same wrapper as the flags: glibc reads
 * MALLOC_ARENA_MAX at the process start, before node's own threads have arenas (a daemon started
 * without it caps them itself at start, later and so less: memtrim.ts limitMallocArenas). With
 * it the RSS after a burst of 1,000 acquires settled 4-5 MiB lower (docs/benchmarks.md).
 */
export const DAEMON_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: String(MALLOC_ARENAS) };

/** The flags of DAEMON_NODE_FLAGS this process was not started with (argv or NODE_OPTIONS). */
export function missingNodeFlags(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): string[] {
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)].map((f) => f.split('=')[0].replace(/_/g, '-')));
  return DAEMON_NODE_FLAGS.filter((f) => !given.has(f.split('=')[0]));
}
