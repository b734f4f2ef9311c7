/**
 * The daemon renews leases: its stderr going away (journald restarted, a terminal closed) must not
 * stop it, while the CLI's commands end quietly on a closed pipe (test/cli). A real daemon whose
 * stdout and stderr are pipes we close.
 */
import * as fs from 'fs';
import * as path from 'path';
import { AgentHost, cli, startHost, stopHost, waitJoined, waitJustRenewed, writeHostConfig } from '../helpers/agentproc';
import { lockagent, makeTempDir, removeTempDir, sparseFile } from '../helpers/cli';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(60000);

describe('the daemon outlives its stderr', () => {
  let base: string;
  let h: AgentHost | undefined;
  afterAll(async () => {
    if (h) await stopHost(h, 'SIGKILL');
    removeTempDir(base);
  });

  it('with its stdout and stderr pipes closed, it logs on (the lines are lost), answers and renews', async () => {
    base = makeTempDir('la-stderr-');
    const leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    const res = `${LS}:r1:${sparseFile(path.join(leaseDir, 'r1'), 1048576)}:0`;
    expect((await lockagent(['direct', 'init', '-r', res])).code).toBe(0);
    h = startHost(writeHostConfig(base, 1, { leaseDir, extra: 'log_stderr = 1' }), { pipes: true });
    await waitJoined(h);
    h.proc!.stdout!.destroy();
    h.proc!.stderr!.destroy();
    // Each is an info line on stderr (log_level debug: renewals log too).
    expect((await cli(h, ['client', 'acquire', '-r', res, '--owner', 'o-1'])).code).toBe(0);
    expect((await cli(h, ['client', 'release', '--owner', 'o-1'])).code).toBe(0);
    await waitJustRenewed(h);
    expect({ exit: h.proc!.exitCode, signal: h.proc!.signalCode }).toEqual({ exit: null, signal: null });
  });
});
