/**
 * Which lockspaces a restarted daemon joins: the config's while the config names them (or while
 * leases are still held in them), and those joined at runtime (client add_lockspace) until
 * rem_lockspace. A real daemon restarted with a changed config; its state database read between runs.
 */
import Database from 'better-sqlite3';
import * as fs from 'fs';
import * as path from 'path';
import { AgentHost, cli, log, startHost, status, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';
import { lockagent, makeTempDir, removeTempDir, sparseFile } from '../helpers/cli';
import { StateStore } from '../../src/state/statestore';

const DISKS = '__LIBVIRT__DISKS__';
jest.setTimeout(180000);

describe('lockspaces after a restart: the config decides for its own, add_lockspace for the rest', () => {
  let base: string;
  let leaseDir: string;
  let h: AgentHost | undefined;
  const lsFile = (name: string) => path.join(leaseDir, name);
  const res = () => `LSCONF:res1:${lsFile('res1')}:0`;

  beforeAll(async () => {
    base = makeTempDir('la-lsorigin-');
    leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    for (const name of ['LSCONF', 'LSRUN']) {
      sparseFile(lsFile(name), 1048576);
      expect((await lockagent(['direct', 'init', '-s', `${name}:0:${lsFile(name)}:0`, '-o', '1'])).code).toBe(0);
    }
    sparseFile(lsFile('res1'), 1048576);
    expect((await lockagent(['direct', 'init', '-r', res()])).code).toBe(0);
  });

  afterAll(async () => {
    if (h) await stopHost(h, 'SIGKILL');
    removeTempDir(base);
  });

  const rows = (host: AgentHost) => {
    const s = new StateStore(path.join(host.dir, 'state.db'));
    try {
      return s.lockspaces().map((r) => r.name);
    } finally {
      s.close();
    }
  };
  const joined = async (host: AgentHost) => (await status(host)).lockspaces.map((l) => l.name).sort();
  /** (Re)start host 1 with this much config beyond the defaults, and wait until `names` are joined. */
  const restart = async (extra: string, names: string[]) => {
    if (h) await stopHost(h);
    const next = writeHostConfig(base, 1, { leaseDir, extra });
    fs.writeFileSync(next.logFile, ''); // this run's lines only
    h = startHost(next);
    await waitFor('the control socket', async () => (await status(h!).catch(() => undefined)) ?? undefined, 20000);
    await Promise.all(names.map((n) => waitJoined(h!, n)));
    return h;
  };

  it('a lockspace dropped from the config is left, unless leases are still held in it; one added at runtime is joined until rem_lockspace', async () => {
    h = await restart(`lockspaces = [ "LSCONF:1:${lsFile('LSCONF')}:0" ]`, [DISKS, 'LSCONF']);
    const add = await cli(h, ['client', 'add_lockspace', '-s', `LSRUN:1:${lsFile('LSRUN')}:0`, '-o', '1']);
    expect({ code: add.code, err: add.stderr }).toMatchObject({ code: 0 });
    await waitJoined(h, 'LSRUN');
    expect((await cli(h, ['client', 'acquire', '-r', res(), '--owner', 'o-1'])).code).toBe(0);

    // auto_disk_leases off and LSCONF removed: the disk lockspace is left; LSCONF, where o-1
    // holds a lease, is joined again and the lease re-adopted; LSRUN is add_lockspace's.
    h = await restart('auto_disk_leases = 0', ['LSRUN', 'LSCONF']);
    await waitFor('o-1 re-adopted', async () => ((await status(h!)).owners.find((o) => o.uuid === 'o-1')?.leases.length ? true : undefined), 20000);
    expect(await joined(h)).toEqual(['LSCONF', 'LSRUN']);
    expect(log(h)).toMatch(/lockspace __LIBVIRT__DISKS__ .* is not joined again: the config no longer names it/);
    expect(log(h)).toMatch(/lockspace LSCONF .* is no longer in the config, but 1 lease\(s\) are held in it .*joined again so that their owners keep them/);
    expect((await cli(h, ['client', 'release', '--owner', 'o-1'])).code).toBe(0);

    // None held any more: LSCONF is left too.
    h = await restart('auto_disk_leases = 0', ['LSRUN']);
    await waitFor('the start to settle', async () => (/lockspace LSCONF .* is not joined again: the config no longer names it/.test(log(h!)) ? true : undefined), 10000);
    expect(await joined(h)).toEqual(['LSRUN']);
    await stopHost(h);
    expect(rows(h)).toEqual(['LSRUN']);

    // A database of an earlier build, which recorded no config lockspaces and kept the config's
    // disk lockspace (host_id "auto" kept as 0): that row is the config's.
    const s = new StateStore(path.join(h.dir, 'state.db'));
    s.saveLockspace({ name: DISKS, hostId: 0, path: lsFile(DISKS), offset: 0, generation: 0, ioTimeout: 1 });
    s.close();
    const db = new Database(path.join(h.dir, 'state.db'));
    db.prepare('DELETE FROM meta WHERE key = ?').run('config-lockspaces');
    db.close();
    h = await restart('auto_disk_leases = 0', ['LSRUN']);
    await waitFor('the start to settle', async () => (/lockspace __LIBVIRT__DISKS__ .* is not joined again: the config no longer names it/.test(log(h!)) ? true : undefined), 10000);
    expect(await joined(h)).toEqual(['LSRUN']);

    // rem_lockspace forgets it: the next start joins nothing.
    expect((await cli(h, ['client', 'rem_lockspace', '-s', `LSRUN:1:${lsFile('LSRUN')}:0`])).code).toBe(0);
    h = await restart('auto_disk_leases = 0', []);
    expect(await joined(h)).toEqual([]);
  });
});
