/**
 * Which lockspaces a restarted daemon joins: the config's while the config names them, and
 * those joined at runtime (client add_lockspace) until rem_lockspace. A real daemon restarted
 * with a changed config; its state database read between runs.
 */
import * as fs from 'fs';
import * as path from 'path';
import { AgentHost, cli, log, startHost, status, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';
import { lockagent, makeTempDir, removeTempDir, sparseFile } from '../helpers/cli';
import { StateStore } from '../../src/state/statestore';

const DISKS = '__LIBVIRT__DISKS__';
jest.setTimeout(120000);

describe('lockspaces after a restart: the config decides for its own, add_lockspace for the rest', () => {
  let base: string;
  let leaseDir: string;
  let h: AgentHost | undefined;
  const lsFile = (name: string) => path.join(leaseDir, name);

  beforeAll(async () => {
    base = makeTempDir('la-lsorigin-');
    leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    for (const name of ['LSCONF', 'LSRUN']) {
      sparseFile(lsFile(name), 1048576);
      expect((await lockagent(['direct', 'init', '-s', `${name}:0:${lsFile(name)}:0`, '-o', '1'])).code).toBe(0);
    }
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

  it('a lockspace dropped from the config, or auto_disk_leases turned off, is not joined again; one added at runtime is', async () => {
    h = startHost(writeHostConfig(base, 1, { leaseDir, extra: `lockspaces = [ "LSCONF:1:${lsFile('LSCONF')}:0" ]` }));
    await Promise.all([waitJoined(h, DISKS), waitJoined(h, 'LSCONF')]);
    const add = await cli(h, ['client', 'add_lockspace', '-s', `LSRUN:1:${lsFile('LSRUN')}:0`, '-o', '1']);
    expect({ code: add.code, err: add.stderr }).toMatchObject({ code: 0 });
    await waitJoined(h, 'LSRUN');
    await stopHost(h);
    // Only the runtime one is remembered.
    expect(rows(h)).toEqual(['LSRUN']);

    // An earlier build kept the config's lockspaces too (host_id 0 for host_id = "auto"): its
    // row of the disk lockspace must not outlive auto_disk_leases = 0.
    const s = new StateStore(path.join(h.dir, 'state.db'));
    s.saveLockspace({ name: DISKS, hostId: 0, path: lsFile(DISKS), offset: 0, generation: 0, ioTimeout: 1 });
    s.close();

    h = startHost(writeHostConfig(base, 1, { leaseDir, extra: 'auto_disk_leases = 0' }));
    await waitJoined(h, 'LSRUN');
    await waitFor('the start to settle', async () => (/not joined again: auto_disk_leases is 0 now/.test(log(h!)) ? true : undefined), 10000);
    expect(await joined(h)).toEqual(['LSRUN']);
    await stopHost(h);
    expect(rows(h)).toEqual(['LSRUN']);

    // rem_lockspace forgets it: the next start joins nothing.
    h = startHost(writeHostConfig(base, 1, { leaseDir, extra: 'auto_disk_leases = 0' }));
    await waitJoined(h, 'LSRUN');
    expect((await cli(h, ['client', 'rem_lockspace', '-s', `LSRUN:1:${lsFile('LSRUN')}:0`])).code).toBe(0);
    await stopHost(h);
    h = startHost(writeHostConfig(base, 1, { leaseDir, extra: 'auto_disk_leases = 0' }));
    await waitFor('the control socket', async () => (await status(h!).catch(() => undefined)) ?? undefined, 20000);
    expect(await joined(h)).toEqual([]);
  });
});
