/**
 * One error mapper in the control server (issue 13 item 2): a request refused by policy (a lease
 * plan libvirt's rules forbid, a domain XML that is not valid) is answered with its own code and
 * sentence and logged as a refusal; lease refusals (contention) likewise, at info; only a real
 * fault is answered SANLK_ERROR and logged as a fault, with its stack.
 */
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { callAgent } from '../../src/control/client';
import { ControlServer } from '../../src/control/server';
import { DomainXmlError } from '../../src/libvirt/domainxml';
import { LeasePlanError } from '../../src/libvirt/leaseplan';
import { LeaseError } from '../../src/ondisk/results';

describe('control server: refusals and faults', () => {
  let dir: string;
  let server: ControlServer;
  let faults: string[];
  let refusals: Array<[string, string]>;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'la-ctlerr-'));
    faults = [];
    refusals = [];
    server = new ControlServer({
      path: join(dir, 'sock'),
      mode: 0o600,
      handler: async (req) => {
        if (req.op === 'domain_prepare') throw new LeasePlanError('LEASE_REQUIRED', 'disk vda has no lease and require_lease_for_disks = 1');
        if (req.op === 'domain_migrate') throw new DomainXmlError('no <uuid>');
        if (req.op === 'acquire') throw new LeaseError(-243, 'disk /nfs/a.qcow2 is leased by host 3 (node03)');
        throw new Error('boom');
      },
      onError: (m) => faults.push(m),
      onRequestRefused: (level, m) => refusals.push([level, m]),
    });
    await server.listen();
  });
  afterEach(async () => { await server.close(); rmSync(dir, { recursive: true, force: true }); });

  const failure = (p: Promise<unknown>) => p.then(() => { throw new Error('expected a refusal'); }, (e: LeaseError) => e);

  it('answers a lease-plan refusal with EINVAL and its sentence, logged as a refusal', async () => {
    const e = await failure(callAgent(join(dir, 'sock'), { op: 'domain_prepare', xml: '<domain/>' }));
    expect(e.rv).toBe(-22);
    expect(e.message).toBe('disk vda has no lease and require_lease_for_disks = 1');
    expect(refusals).toEqual([['warning', 'refused: domain_prepare: disk vda has no lease and require_lease_for_disks = 1']]);
    expect(faults).toEqual([]);
  });

  it('answers a domain XML refusal with EINVAL, logged as a refusal', async () => {
    const e = await failure(callAgent(join(dir, 'sock'), { op: 'domain_migrate', xml: '<domain/>' }));
    expect(e.rv).toBe(-22);
    expect(e.message).toBe('domain XML: no <uuid>');
    expect(refusals.map(([l]) => l)).toEqual(['warning']);
    expect(faults).toEqual([]);
  });

  it('answers contention with its sanlock code, logged at info', async () => {
    const e = await failure(callAgent(join(dir, 'sock'), { op: 'acquire', owner: { uuid: 'u1' }, leases: [] }));
    expect(e.rv).toBe(-243);
    expect(refusals).toEqual([['info', 'refused: acquire: disk /nfs/a.qcow2 is leased by host 3 (node03) (SANLK_ACQUIRE_IDLIVE)']]);
    expect(faults).toEqual([]);
  });

  it('answers a real fault with SANLK_ERROR and logs it as a fault with its stack', async () => {
    const e = await failure(callAgent(join(dir, 'sock'), { op: 'status' }));
    expect(e.rv).toBe(-201);
    expect(e.message).toBe('boom');
    expect(refusals).toEqual([]);
    expect(faults).toHaveLength(1);
    expect(faults[0]).toMatch(/^control request failed: status: Error: boom\n\s+at /);
  });
});
