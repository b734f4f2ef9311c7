import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { StateStore } from '../../src/state/statestore';

describe('StateStore', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'la-state-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps owners, leases, lockspaces, meta and the journal across a reopen', () => {
    const path = join(dir, 'state.db');
    const a = new StateStore(path);
    a.setMeta('host_name', 'uuid.node1');
    a.saveLockspace({ name: '__LIBVIRT__DISKS__', hostId: 3, path: '/l/__LIBVIRT__DISKS__', offset: 0, generation: 7, ioTimeout: 1 });
    a.upsertOwner({ uuid: 'u1', name: 'vm1', pid: 1234 });
    a.recordLease({ ownerUuid: 'u1', lockspace: '__LIBVIRT__DISKS__', resource: 'abc', path: '/l/abc', offset: 0, mode: 'exclusive', lver: 5, generation: 7 });
    const op = a.beginOp({ op: 'acquire', ownerUuid: 'u1', lockspace: '__LIBVIRT__DISKS__', resource: 'def', path: '/l/def', offset: 0, mode: 'shared' });
    a.close(); // no orderly shutdown needed: WAL + synchronous=FULL

    const b = new StateStore(path);
    expect(b.getMeta('host_name')).toBe('uuid.node1');
    expect(b.lockspaces()).toEqual([{ name: '__LIBVIRT__DISKS__', hostId: 3, path: '/l/__LIBVIRT__DISKS__', offset: 0, generation: 7, ioTimeout: 1 }]);
    expect(b.owner('u1')).toMatchObject({ name: 'vm1', pid: 1234, state: 'active' });
    expect(b.leases('u1')).toEqual([expect.objectContaining({ resource: 'abc', lver: 5, mode: 'exclusive', held: 1 })]);
    expect(b.pendingOps()).toEqual([expect.objectContaining({ id: op, op: 'acquire', resource: 'def', mode: 'shared' })]);
    b.endOp(op);
    expect(b.pendingOps()).toEqual([]);
    b.close();
  });

  it('remembers the lver of a lease released on suspend, and drops leases with their owner', () => {
    const s = new StateStore(':memory:');
    s.upsertOwner({ uuid: 'u1', name: 'vm1' });
    s.recordLease({ ownerUuid: 'u1', lockspace: 'LS', resource: 'r', path: '/p', offset: 0, mode: 'exclusive', lver: 9, generation: 1 });
    s.markLeaseReleased('u1', 'LS', 'r');
    s.setOwnerState('u1', 'suspended');
    expect(s.leases('u1')[0]).toMatchObject({ held: 0, lver: 9 });
    expect(s.owner('u1')?.state).toBe('suspended');
    s.upsertOwner({ uuid: 'u1', name: 'vm1-renamed' });
    expect(s.owner('u1')).toMatchObject({ name: 'vm1-renamed', state: 'active' });
    s.removeOwner('u1');
    expect(s.leases()).toEqual([]);
    s.close();
  });
});
