/**
 * The node flags the daemon runs with. One place: the installed `lockagent` wrapper adds them
 * to `lockagent daemon` (scripts/install.sh reads them from here), and the benchmarks and tests
 * that start daemons use them too, so what is measured is what runs.
 *
 * --max-semi-space-size=1: V8 sizes its young generation up to 2 × 16 MiB under load, and the
 * pages stay mapped; the agent's requests allocate little and briefly, so a 1 MiB semi-space
 * costs a few more (sub-millisecond) scavenges and takes ~15 MiB off the daemon's RSS
 * (docs/benchmarks.md). It is a flag of the process start: V8 ignores it once the heap exists.
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];

/** The flags of DAEMON_NODE_FLAGS this process was not started with (argv or NODE_OPTIONS). */
export function missingNodeFlags(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): string[] {
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)].map((f) => f.split('=')[0].replace(/_/g, '-')));
  return DAEMON_NODE_FLAGS.filter((f) => !given.has(f.split('=')[0]));
}
