/**
 * The inode race between the sweeper and an acquirer on another host, with the interleavings
 * injected at exact points (hooks in the agents' storage) instead of found by a stress loop:
 *
 *  1. An acquirer opens a lease file; before its first I/O the file is deleted (and re-created)
 *     under it. It must not end up holding the lease on the unreachable file: it notices that
 *     the path names another file, releases, and takes the lease on the file the path names.
 *  2. The sweeper's ballot for a lease is overtaken by an acquirer's ballot, which commits the
 *     sweeper as owner (write_id = the acquirer, -245 for it). The sweeper then "holds" a lease
 *     whose leader another host wrote. Deleting the file now, its pinned leader (owner us,
 *     write_id them) plus our RELEASED dblock would read as free to every late acquirer with
 *     an fd of the deleted file (the flaky violation of sweep.test.ts "racing"). The sweeper
 *     must keep such a file.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Agent, HeldLease } from '../../src/agent/agent';
import { ensureLockspaceFile } from '../../src/agent/lockspacefile';
import { ensureResourceFile } from '../../src/agent/resourcefile';
import { sweep } from '../../src/cleanup/sweep';
import { LeaseSpec } from '../../src/agent/types';
import { FileLeaseStorage } from '../../src/io/file-storage';
import { systemClock } from '../../src/lease/clock';
import { LeaseStorage } from '../../src/lease/storage';
import { memoryLogger } from '../../src/log/logger';
import { DBLOCK_FL_RELEASED, decodeDblock, decodeLeader, DEFAULT_GEOMETRY, LeaseError } from '../../src/ondisk';
import { StateStore } from '../../src/state/statestore';
import { LS, md5 } from './helpers';

jest.setTimeout(120000);

type OpenHook = (target: string, storage: FileLeaseStorage) => Promise<LeaseStorage>;

describe('inode race, injected interleavings', () => {
  let base: string;
  let dir: string;
  const p = (n: string) => path.join(dir, n);
  const spec = (n: string): LeaseSpec => ({ lockspace: LS, resource: n, path: p(n), offset: 0, mode: 'exclusive' });
  const agents: Agent[] = [];
  /** per-agent hook, set by each test; default: plain storage */
  const hooks = new Map<number, OpenHook>();
  const logs = new Map<number, string[]>();

  const mkAgent = async (hostId: number): Promise<Agent> => {
    const log = memoryLogger();
    logs.set(hostId, log.lines);
    const a = new Agent({
      clock: systemClock, log, store: new StateStore(path.join(base, `host${hostId}.db`)), hostName: `node0${hostId}`,
      policy: { onLeaseFailure: async () => undefined },
      openStorage: async (target) => {
        const s = await FileLeaseStorage.open(target);
        const h = target !== p(LS) ? hooks.get(hostId) : undefined;
        return h ? h(target, s) : s;
      },
    });
    agents.push(a);
    a.addLockspace({ name: LS, hostId, path: p(LS), offset: 0, ioTimeout: 1 });
    return a;
  };

  let A: Agent; // host 1: sweeps
  let C: Agent; // host 3: acquires

  beforeAll(async () => {
    base = fs.mkdtempSync('/tmp/la-inode-race-');
    dir = path.join(base, 'leases');
    fs.mkdirSync(dir);
    await ensureLockspaceFile(p(LS), LS, DEFAULT_GEOMETRY, 1);
    [A, C] = await Promise.all([mkAgent(1), mkAgent(3)]);
    await Promise.all([A.lockspaces.get(LS)!.waitJoined(30000), C.lockspaces.get(LS)!.waitJoined(30000)]);
  });

  afterAll(async () => {
    for (const a of agents) await a.shutdown(true).catch(() => undefined);
    if (base?.startsWith('/tmp/')) fs.rmSync(base, { recursive: true, force: true });
  });

  afterEach(() => hooks.clear());

  const ino = (n: string) => (fs.existsSync(p(n)) ? fs.statSync(p(n), { bigint: true }).ino : undefined);
  const leaderOf = (fd: number) => {
    const b = Buffer.alloc(512);
    fs.readSync(fd, b, 0, 512, 0);
    return decodeLeader(b, 0);
  };

  /** The first open of `name` by host 3 runs `between` after the open and before any I/O. */
  const interleaveOnce = (name: string, between: () => Promise<void>) => {
    let done = false;
    let oldFd: number | undefined;
    hooks.set(3, async (target, s) => {
      if (!done && target === p(name)) {
        done = true;
        oldFd = fs.openSync(target, 'r'); // to inspect the old file afterwards
        await between();
      }
      return s;
    });
    return () => oldFd!;
  };

  it('an acquirer whose lease file is replaced between its open and its ballot follows the path to the new file', async () => {
    const n = md5('/race/replaced.img');
    await ensureResourceFile(p(n), LS, n, DEFAULT_GEOMETRY);
    const first = ino(n);
    const oldFd = interleaveOnce(n, async () => {
      // Another host's cleanup deletes the free lease file, a third host re-creates it.
      fs.unlinkSync(p(n));
      await ensureResourceFile(p(n), LS, n, DEFAULT_GEOMETRY);
    });
    const [h] = await C.acquire({ uuid: 'vm-1', name: 'vm1' }, [spec(n)], { timeoutMs: 10000 });
    expect(ino(n)).not.toBe(first);
    expect(h.file?.ino).toBe(ino(n));
    expect(logs.get(3)!.some((l) => l.includes(`${p(n)} was replaced by a new file while we were acquiring its lease; released the lease on the old file, trying again`))).toBe(true);
    // The lease on the old, unreachable file was taken and given back: not left held by us.
    const old = leaderOf(oldFd());
    expect(old.lver).toBe(1);
    expect(old.timestamp).toBe(0);
    fs.closeSync(oldFd());
    // The lease on the file the path names is ours and is released normally.
    const newFd = fs.openSync(p(n), 'r');
    expect(leaderOf(newFd)).toMatchObject({ ownerId: 3, lver: 1 });
    await C.release({ uuid: 'vm-1' });
    expect(leaderOf(newFd).timestamp).toBe(0);
    fs.closeSync(newFd);
  });

  it('an acquirer whose lease file is deleted under it re-creates it when asked to, and fails with -2 otherwise', async () => {
    const n = md5('/race/deleted.img');
    await ensureResourceFile(p(n), LS, n, DEFAULT_GEOMETRY);
    interleaveOnce(n, async () => fs.unlinkSync(p(n)));
    const recreate = jest.fn(async (s: LeaseSpec) => { await ensureResourceFile(s.path, s.lockspace, s.resource, DEFAULT_GEOMETRY); });
    const [h] = await C.acquire({ uuid: 'vm-2', name: 'vm2' }, [spec(n)], { timeoutMs: 10000, recreate });
    expect(recreate).toHaveBeenCalledTimes(1);
    expect(h.file?.ino).toBe(ino(n));
    await C.release({ uuid: 'vm-2' });

    const m = md5('/race/deleted-no-recreate.img');
    await ensureResourceFile(p(m), LS, m, DEFAULT_GEOMETRY);
    const oldFd = interleaveOnce(m, async () => fs.unlinkSync(p(m)));
    const err = await C.acquire({ uuid: 'vm-3', name: 'vm3' }, [spec(m)], { timeoutMs: 10000 }).catch((e: LeaseError) => e);
    expect(err).toBeInstanceOf(LeaseError);
    expect((err as LeaseError).rv).toBe(-2);
    expect((err as LeaseError).message).toMatch(/the lease file was deleted .* while acquiring it/);
    expect(C.inquire('vm-3')).toEqual([]);
    expect(leaderOf(oldFd()).timestamp).toBe(0); // nothing left held on the deleted file
    fs.closeSync(oldFd());
  });

  it('a release never writes into a file that replaced the leased one: it releases on the file it acquired', async () => {
    const n = md5('/race/replaced-while-held.img');
    await ensureResourceFile(p(n), LS, n, DEFAULT_GEOMETRY);
    const [h]: HeldLease[] = await C.acquire({ uuid: 'vm-4', name: 'vm4' }, [spec(n)], { timeoutMs: 10000 });
    expect(h.file?.ino).toBe(ino(n));
    const oldFd = fs.openSync(p(n), 'r');
    expect(leaderOf(oldFd).timestamp).not.toBe(0);
    // Deleted by hand while held (no lease-respecting tool can), and re-created.
    fs.unlinkSync(p(n));
    await ensureResourceFile(p(n), LS, n, DEFAULT_GEOMETRY);
    const before = fs.readFileSync(p(n));
    await C.release({ uuid: 'vm-4' });
    expect(fs.readFileSync(p(n)).equals(before)).toBe(true);
    expect(C.inquire('vm-4')).toEqual([]);
    // The file stays open from the acquire to the release: the release went to the inode we
    // acquired, which is free now, and never to the file that took its name.
    expect(leaderOf(oldFd).timestamp).toBe(0);
    fs.closeSync(oldFd);
  });

  it('a sweep whose lease was committed by a competing acquirer\'s ballot keeps the file (and no late acquirer gets the old inode)', async () => {
    const n = md5('/race/contended.img');
    await ensureResourceFile(p(n), LS, n, DEFAULT_GEOMETRY);
    const old = new Date(Date.now() - 7200 * 1000);
    fs.utimesSync(p(n), old, old);
    const first = ino(n);
    const alias = p(`.lockagent-cleanup.${n}`);
    let raced: unknown;
    // Host 1's phase-2 vote for lver 1 is on disk: now host 3 runs a whole acquire. Its ballot
    // (higher mbal) must adopt host 1's value and commit it: -245 for host 3, and host 1's
    // ballot, aborted by the higher mbal, then finds lver 1 committed with itself as owner.
    hooks.set(1, async (target, s) => {
      if (target !== alias) return s;
      const write = s.write.bind(s);
      return Object.assign(s, {
        write: async (offset: number, data: Buffer, t: number) => {
          await write(offset, data, t);
          const d = offset === 1024 ? decodeDblock(data, 0) : undefined;
          if (raced === undefined && d && d.bal && !(d.flags & DBLOCK_FL_RELEASED)) {
            raced = await C.acquire({ uuid: 'vm-late', name: 'vmLate' }, [spec(n)], { timeoutMs: 10000 }).catch((e: LeaseError) => e.rv);
          }
        },
      });
    });
    const log = memoryLogger();
    const r = await sweep({
      agent: A, log, store: undefined,
      config: { diskLeaseDir: dir, ioTimeout: 1, sectorSize: 512, alignSize: 1048576, cleanupMinAge: 0 },
    }, { dryRun: false, minAgeSeconds: 0 });
    expect(raced).toBe(-245);
    const v = r.files.find((f) => f.name === n)!;
    expect(v).toMatchObject({ class: 'in use', action: 'kept' });
    expect(v.detail).toMatch(/host 3 was acquiring it at the same moment/);
    expect(ino(n)).toBe(first);
    expect(fs.existsSync(alias)).toBe(false);
    expect(A.inquire('cleanup:node01')).toEqual([]);
    // The lease went back free, on the file the path still names: host 3 takes it there.
    hooks.clear();
    const [h] = await C.acquire({ uuid: 'vm-late', name: 'vmLate' }, [spec(n)], { timeoutMs: 10000 });
    expect(h.file?.ino).toBe(ino(n));
    await C.release({ uuid: 'vm-late' });
  });
});
