/**
 * The scale, NFS-latency and virsh-start benchmarks (scripts/bench/scale.js, nfs.js, virsh-start.js) in their tiny --smoke
 * sizes, so they cannot rot between benchmark runs: each must run to the end against real
 * sanlock and lockagent daemons (nfs.js through a latencyfs FUSE mount) and write its result
 * JSON with every measure it reports. Benchmarks are not tests: no number is judged here.
 */
import { spawn } from 'child_process';
import { existsSync, mkdtempSync, readFileSync } from 'fs';
import { tmpdir } from 'os';
import path from 'path';
import { cliEntry, removeTempDir, ROOT } from '../helpers/cli';

interface Metric { id: string; unit: string; lockagent: { median?: number }; sanlock?: { median?: number } }
interface Result { name: string; metrics: Metric[]; params: Record<string, unknown>; machine: Record<string, unknown> }

let work: string;
beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'la-bench-smoke-'));
});
afterAll(() => removeTempDir(work));

/** Runs a benchmark script with the test build of lockagent; resolves its result file. */
function bench(script: string, args: string[]): Promise<Result> {
  const out = path.join(work, `${script}-${args.join('_').replace(/[^\w]/g, '')}.json`);
  const env = {
    ...process.env,
    BENCH_WORK: work,
    LOCKAGENT_DIST: path.dirname(path.dirname(cliEntry())),
    LOCKAGENT_NATIVE_ADDON: path.join(ROOT, 'native', 'build', 'Release', 'lockagent_native.node'),
  };
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [path.join(ROOT, 'scripts', 'bench', script), ...args, '--out', out], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    p.on('error', reject);
    p.on('close', (code) => {
      if (code !== 0 || !existsSync(out)) reject(new Error(`${script} ${args.join(' ')} exited ${code}:\n${err.split('\n').slice(-15).join('\n')}`));
      else resolve(JSON.parse(readFileSync(out, 'utf8')) as Result);
    });
  });
}

function expectMeasured(r: Result, ids: string[], withSanlock: string[]): void {
  const got = new Map(r.metrics.map((m) => [m.id, m]));
  for (const id of ids) {
    const m = got.get(id);
    expect({ id, measured: typeof m?.lockagent.median === 'number' }).toEqual({ id, measured: true });
  }
  for (const id of withSanlock) {
    expect({ id, sanlock: typeof got.get(id)?.sanlock?.median === 'number' }).toEqual({ id, sanlock: true });
  }
}

describe('benchmark smoke runs', () => {
  it('throughput.js --smoke: cycles with 1 and 8 clients and releases after a hold, both tools', async () => {
    const r = await bench('throughput.js', ['--smoke']);
    expect(r.name).toBe('throughput');
    const ids = ['throughput.clients1', 'throughput.clients8', 'latency.release.clients1', 'latency.release.afterhold.clients1', 'latency.acquire.clients8'];
    expectMeasured(r, ids, ids);
  });

  it('nfs.js --smoke: both tools through latencyfs at 1 ms, with requests and bytes per operation', async () => {
    const r = await bench('nfs.js', ['--smoke']);
    expect(r.name).toBe('nfs');
    const ids = [
      'nfs.requests.acquire', 'nfs.requests.acquire.again', 'nfs.requests.release', 'nfs.kib.acquire', 'nfs.kib.release',
      'nfs.1ms.throughput.clients1', 'nfs.1ms.throughput.clients8', 'nfs.1ms.acquire.p50.clients1', 'nfs.1ms.acquire.p99.clients8',
      'nfs.1ms.files.throughput.clients8', 'nfs.1ms.files.acquire.p50.clients8',
    ];
    expectMeasured(r, ids, ids);
    // the FUSE layer saw the lease I/O of both tools (the counts are the point of the bench)
    const req = r.metrics.find((m) => m.id === 'nfs.requests.acquire')!;
    expect(req.lockagent.median).toBeGreaterThan(0);
    expect(req.sanlock!.median).toBeGreaterThan(0);
    // nothing stays mounted
    expect(readFileSync('/proc/self/mounts', 'utf8')).not.toContain(work);
  }, 90000);

  it('virsh-start.js --smoke: every configuration starts the domain, lockagent\'s (hook and lock-driver plugin) with its lease held', async () => {
    const r = await bench('virsh-start.js', ['--smoke']);
    const m = (id: string) => r.metrics.find((x) => x.id === id);
    // each lockagent start is counted only once the agent holds the domain's lease
    for (const id of ['virsh.start', 'virsh.start.plugin']) {
      expect(m(id)?.lockagent.median).toBeGreaterThan(0);
      expect(m(id)?.sanlock?.median).toBeGreaterThan(0);
    }
    expect(m('virsh.start.overhead.plugin')).toBeDefined();
  }, 600_000);

  it('scale.js --smoke: client curve, many leases, domain prepare', async () => {
    const r = await bench('scale.js', ['--smoke', '--only', 'clients,leases,domain']);
    expectMeasured(r, [
      'scale.clients1.acquire.p50', 'scale.clients4.acquire.p99', 'scale.clients4.cpu',
      'scale.leases.rss', 'scale.leases.status.cli', 'scale.leases.renewal.gap',
      'scale.domain1.first', 'scale.domain8.again',
    ], ['scale.clients1.acquire.p50', 'scale.clients4.cpu']);
  }, 90000);

  it('scale.js --smoke: many live hosts, cleanup dry run', async () => {
    const r = await bench('scale.js', ['--smoke', '--only', 'hosts,cleanup']);
    expectMeasured(r, ['scale.hosts.renewal', 'scale.hosts.cpu.alone', 'scale.hosts.cpu', 'scale.hosts.cpu.steady', 'scale.hosts.cpu.renewal', 'scale.cleanup.dryrun', 'scale.cleanup.dryrun.agent'], ['scale.hosts.renewal', 'scale.hosts.cpu.alone', 'scale.hosts.cpu', 'scale.hosts.cpu.steady', 'scale.hosts.cpu.renewal']);
  }, 90000);
});
