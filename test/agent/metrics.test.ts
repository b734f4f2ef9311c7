/**
 * Prometheus metrics of a real agent process: scraped over HTTP at metrics_listen around an
 * acquire/release; names, types and documentation checked; the listener refuses non-loopback
 * addresses unless allowed and goes away with the daemon.
 */
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as path from 'path';
import { lockagent, makeTempDir, removeTempDir, ROOT, sparseFile } from '../helpers/cli';
import { AgentHost, cli, startHost, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(120000);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function get(port: number, urlPath = '/metrics'): Promise<{ status: number; type?: string; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: urlPath, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }));
    }).on('error', reject);
  });
}

interface Scrape {
  types: Map<string, string>;
  /** 'name{a="x",b="y"}' (labels as printed) → value */
  values: Map<string, number>;
}

function parse(text: string): Scrape {
  const types = new Map<string, string>();
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) types.set(t[1], t[2]);
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    values.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return { types, values };
}

async function scrape(port: number): Promise<Scrape> {
  const r = await get(port);
  expect(r.status).toBe(200);
  expect(r.type).toMatch(/^text\/plain/);
  return parse(r.body);
}

/** The value of the one series whose name and labels match, 0 when absent. */
function val(s: Scrape, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const [k, v] of s.values) {
    const m = /^([^{]+)(?:\{(.*)\})?$/.exec(k)!;
    if (m[1] !== name) continue;
    const have = new Map([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([a, b]) => have.get(a) === b)) sum += v;
  }
  return sum;
}

describe('metrics of a real agent', () => {
  let base: string;
  let leaseDir: string;
  let host: AgentHost;
  let port: number;

  beforeAll(async () => {
    base = makeTempDir('la-metrics-');
    leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    sparseFile(path.join(leaseDir, 'r1'), 1048576);
    expect((await lockagent(['direct', 'init', '-r', `${LS}:r1:${path.join(leaseDir, 'r1')}:0`])).code).toBe(0);
    port = await freePort();
    host = startHost(writeHostConfig(base, 1, { leaseDir, extra: `metrics_listen = "127.0.0.1:${port}"` }));
    await waitJoined(host);
  });

  afterAll(async () => {
    await stopHost(host, 'SIGKILL');
    removeTempDir(base);
  });

  it('exposes every documented metric with its type, and counters and histograms move', async () => {
    // Two renewals after the join: margins and renewal histograms have values.
    const s1 = await waitFor('two renewals', async () => {
      const s = await scrape(port);
      return val(s, 'lockagent_renewals_total', { lockspace: LS, result: 'ok' }) >= 2 ? s : undefined;
    }, 20000, 500);

    const res = `${LS}:r1:${path.join(leaseDir, 'r1')}:0`;
    expect((await cli(host, ['client', 'acquire', '-r', res, '--owner', 'm1'])).code).toBe(0);
    const held = await scrape(port);
    expect(val(held, 'lockagent_leases_held', { mode: 'exclusive' })).toBe(1);
    expect(val(held, 'lockagent_owners')).toBe(1);
    expect((await cli(host, ['client', 'release', '-r', res, '--owner', 'm1'])).code).toBe(0);
    // an acquire in a lockspace this host never joined: refused with ENOSPC, counted by name
    expect((await cli(host, ['client', 'acquire', '-r', `OTHER:r1:${path.join(leaseDir, 'r1')}:0`, '--owner', 'm2'])).code).not.toBe(0);
    const s2 = await scrape(port);

    expect(val(s2, 'lockagent_acquires_total', { result: 'OK' }) - val(s1, 'lockagent_acquires_total', { result: 'OK' })).toBe(1);
    expect(val(s2, 'lockagent_acquires_total', { result: 'ENOSPC' }) - val(s1, 'lockagent_acquires_total', { result: 'ENOSPC' })).toBe(1);
    expect(val(s2, 'lockagent_releases_total', { result: 'OK' }) - val(s1, 'lockagent_releases_total', { result: 'OK' })).toBe(1);
    expect(val(s2, 'lockagent_acquire_duration_seconds_count') - val(s1, 'lockagent_acquire_duration_seconds_count')).toBe(2);
    for (const kind of ['area_read', 'dblock_write', 'leader_write']) {
      expect(val(s2, 'lockagent_io_duration_seconds_count', { kind })).toBeGreaterThan(val(s1, 'lockagent_io_duration_seconds_count', { kind }));
    }
    expect(val(s2, 'lockagent_io_reads_total')).toBeGreaterThan(val(s1, 'lockagent_io_reads_total'));
    expect(val(s2, 'lockagent_io_writes_total')).toBeGreaterThan(val(s1, 'lockagent_io_writes_total'));
    expect(val(s2, 'lockagent_leases_held', { mode: 'exclusive' })).toBe(0);

    // per lockspace
    expect(val(s2, 'lockagent_lockspace_state', { lockspace: LS, state: 'joined' })).toBe(1);
    expect(val(s2, 'lockagent_lockspace_state', { lockspace: LS, state: 'lost' })).toBe(0);
    expect(val(s2, 'lockagent_lockspace_host_id', { lockspace: LS })).toBe(1);
    expect(val(s2, 'lockagent_lockspace_generation', { lockspace: LS })).toBeGreaterThanOrEqual(1);
    expect(val(s2, 'lockagent_lockspace_io_timeout_seconds', { lockspace: LS })).toBe(1);
    expect(val(s2, 'lockagent_lockspace_renewal_age_seconds', { lockspace: LS })).toBeLessThan(8);
    expect(val(s2, 'lockagent_hosts', { lockspace: LS, state: 'LIVE' })).toBe(1);
    expect(val(s2, 'lockagent_hosts', { lockspace: LS, state: 'DEAD' })).toBe(0);
    const margin = val(s2, 'lockagent_renewal_margin_seconds', { lockspace: LS });
    const minMargin = val(s2, 'lockagent_renewal_margin_min_seconds', { lockspace: LS });
    expect(margin).toBeGreaterThan(0);
    expect(margin).toBeLessThanOrEqual(8);
    expect(minMargin).toBeLessThanOrEqual(margin);
    // Renewals after a successful one (all of them here) send the read and the write as one request.
    expect(val(s2, 'lockagent_renewal_duration_seconds_count', { lockspace: LS, phase: 'read_write' })).toBeGreaterThanOrEqual(2);
    expect(val(s2, 'lockagent_renewal_duration_seconds_count', { lockspace: LS, phase: 'write' })).toBe(0);

    // docs/metrics.md lists exactly what is exposed, with the same types
    const doc = fs.readFileSync(path.join(ROOT, 'docs', 'metrics.md'), 'utf8');
    const documented = new Map([...doc.matchAll(/^\| `(lockagent_\w+)` \| (\w+) \|/gm)].map((m) => [m[1], m[2]]));
    const exposed = new Map([...s2.types].filter(([n]) => n.startsWith('lockagent_')));
    expect([...exposed.keys()].sort()).toEqual([...documented.keys()].sort());
    for (const [n, t] of exposed) expect(`${n} ${documented.get(n)}`).toBe(`${n} ${t}`);
    expect(exposed.get('lockagent_renewal_duration_seconds')).toBe('histogram');
    expect(exposed.get('lockagent_acquires_total')).toBe('counter');
    expect(exposed.get('lockagent_lockspace_state')).toBe('gauge');
  });

  it('serves only GET /metrics', async () => {
    expect((await get(port, '/')).status).toBe(404);
  });

  it('refuses a non-loopback metrics_listen unless metrics_allow_remote = 1', async () => {
    const wild = writeHostConfig(base, 7, { leaseDir, extra: 'metrics_listen = "0.0.0.0:9478"' });
    const r = await lockagent(['config', 'check', '-c', wild.conf]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/metrics_listen = "0.0.0.0:9478" is not a loopback address.*metrics_allow_remote = 1/);
    const allowed = writeHostConfig(base, 8, { leaseDir, extra: 'metrics_listen = "0.0.0.0:9478"\nmetrics_allow_remote = 1' });
    expect((await lockagent(['config', 'check', '-c', allowed.conf])).code).toBe(0);
  });

  it('closes the listener when the daemon stops', async () => {
    await stopHost(host, 'SIGTERM');
    await expect(get(port)).rejects.toThrow(/ECONNREFUSED/);
  });
});
