/**
 * user and group: lease and lockspace files this host creates get that owner and group (real
 * files and a real agent process), and an unknown name is a config error.
 */
import * as fs from 'fs';
import * as path from 'path';
import { leaseFileOwner } from '../../src/agent/leasefile';
import { ensureResourceFile } from '../../src/agent/resourcefile';
import { lookupId } from '../../src/config/accounts';
import { parseConfig } from '../../src/config/config';
import { decodeLeader, DEFAULT_GEOMETRY, geometryFor, MiB } from '../../src/ondisk';
import { makeTempDir, removeTempDir } from '../helpers/cli';
import { startHost, stopHost, waitJoined, writeHostConfig } from '../helpers/agentproc';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(60000);
const asRoot = process.getuid?.() === 0;
const nobody = lookupId('/etc/passwd', 'nobody')?.id;
const nogroup = lookupId('/etc/group', 'nogroup')?.id;
const maybe = asRoot && nobody !== undefined && nogroup !== undefined ? it : it.skip;

describe('user and group own the lease files this host creates', () => {
  let dir: string;
  beforeAll(() => { dir = makeTempDir('la-owner-'); });
  afterAll(() => removeTempDir(dir));

  it('resolves names at load and refuses unknown ones', () => {
    const { config } = parseConfig('user = "nobody"\ngroup = "nogroup"\n');
    expect(config).toMatchObject({ userId: nobody, groupId: nogroup });
    expect(parseConfig('user = "+4242"\n').config.userId).toBe(4242);
    expect(() => parseConfig('user = "no-such-user-la"\n', 'x.conf')).toThrow(/x.conf:1: user = "no-such-user-la": no such user in \/etc\/passwd/);
    expect(() => parseConfig('group = "no-such-group-la"\n', 'x.conf')).toThrow(/no such group in \/etc\/group/);
  });

  maybe('a new lease file: chowned, 0660 with a group, 0600 without', async () => {
    const owned = path.join(dir, 'owned');
    await ensureResourceFile(owned, LS, 'owned', DEFAULT_GEOMETRY, leaseFileOwner(parseConfig('user = "nobody"\ngroup = "nogroup"\n').config));
    const st = fs.statSync(owned);
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([nobody, nogroup, 0o660]);
    const plain = path.join(dir, 'plain');
    await ensureResourceFile(plain, LS, 'plain', DEFAULT_GEOMETRY, leaseFileOwner(parseConfig('').config));
    const sp = fs.statSync(plain);
    expect([sp.uid, sp.gid, sp.mode & 0o777]).toEqual([0, 0, 0o600]);
  });

  maybe('the agent creates its lockspace file with that owner', async () => {
    const leaseDir = path.join(dir, 'leases');
    fs.mkdirSync(leaseDir);
    const h = startHost(writeHostConfig(dir, 1, { leaseDir, extra: 'user = "nobody"\ngroup = "nogroup"' }));
    try {
      await waitJoined(h);
      const st = fs.statSync(path.join(leaseDir, LS));
      expect([st.uid, st.gid, st.mode & 0o777]).toEqual([nobody, nogroup, 0o660]);
    } finally {
      await stopHost(h);
    }
  });
});

describe('max_hosts: host slots of the lease files this host creates', () => {
  let dir: string;
  beforeAll(() => { dir = makeTempDir('la-maxhosts-'); });
  afterAll(() => removeTempDir(dir));

  it('writes num_hosts = max_hosts, capped at the geometry (default 2000)', async () => {
    const leader = (p: string) => decodeLeader(fs.readFileSync(p), 0);
    const f250 = path.join(dir, 'f250');
    await ensureResourceFile(f250, LS, 'f250', DEFAULT_GEOMETRY, leaseFileOwner(parseConfig('max_hosts = 250\n').config));
    expect(leader(f250)).toMatchObject({ numHosts: 250, maxHosts: 2000 });
    const fdef = path.join(dir, 'fdef');
    await ensureResourceFile(fdef, LS, 'fdef', DEFAULT_GEOMETRY, leaseFileOwner(parseConfig('').config));
    expect(leader(fdef)).toMatchObject({ numHosts: 2000, maxHosts: 2000 });
    const f4k = path.join(dir, 'f4k');
    await ensureResourceFile(f4k, LS, 'f4k', geometryFor(4096, MiB), leaseFileOwner(parseConfig('max_hosts = 1000\n').config));
    expect(leader(f4k)).toMatchObject({ numHosts: 250, maxHosts: 250 });
  });
});
