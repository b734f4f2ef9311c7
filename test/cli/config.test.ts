import { execFileSync } from 'child_process';
import { readFileSync, writeFileSync } from 'fs';
import { join } from 'path';
import { ConfigError, configKeys, MAX_CONFIG_BYTES, parseConfig, parseDuration } from '../../src/config/config';
import { MAX_VALUE_BYTES } from '../../src/config/confsyntax';
import { expectOneLine, lockagent, makeTempDir, removeTempDir } from '../helpers/cli';

const SHIPPED = join(__dirname, '..', '..', 'conf', 'lockagent.conf');

describe('config', () => {
  it('parses the shipped conf/lockagent.conf, which documents every key', () => {
    const text = readFileSync(SHIPPED, 'utf8');
    const { config, warnings } = parseConfig(text, SHIPPED);
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({ autoDiskLeases: true, hostId: 1, ioTimeout: 10, requireLeaseForDisks: false, socketMode: 0o660, cleanupMinAge: 3600, alignSize: 1048576 });
    for (const key of configKeys()) expect(text).toMatch(new RegExp(`^#?${key} =`, 'm'));
  });

  it('accepts libvirt qemu-sanlock.conf lines as the augeas lens writes them', () => {
    const { config } = parseConfig('auto_disk_leases=1\ndisk_lease_dir="/var/lib/libvirt/sanlock"\nhost_id=1\nrequire_lease_for_disks=1\nio_timeout=0\nuser="root"\ngroup="root"\n');
    expect(config).toMatchObject({ autoDiskLeases: true, hostId: 1, requireLeaseForDisks: true, ioTimeout: 10, user: 'root', group: 'root' });
  });

  it('require_lease_for_disks defaults to the inverse of auto_disk_leases, as libvirt', () => {
    expect(parseConfig('auto_disk_leases = 0').config.requireLeaseForDisks).toBe(true);
    expect(parseConfig('auto_disk_leases = 1\nhost_id = 3').config.requireLeaseForDisks).toBe(false);
  });

  it.each([
    ['host_idd = 1', /unknown key "host_idd"; did you mean "host_id"\?/],
    ['io_timout = 5', /did you mean "io_timeout"/],
    ['host_id = 2001', /host_id = 2001 is not valid; allowed: a number from 1 to 2000, or "auto"/],
    ['auto_disk_leases = 2', /allowed: 0 or 1/],
    ['auto_disk_leases = 1', /no host ID is set/],
    ['log_level = "verbose"', /allowed: "error", "warning", "info", "debug"/],
    ['align_size = "3M"', /"1M", "2M", "4M" or "8M"/],
    ['sector_size = 512\nalign_size = "8M"', /only allows align_size = "1M"/],
    ['disk_lease_dir = "relative/dir"', /must be an absolute path/],
    ['host_id = "one"', /allowed: a number from 1 to 2000, or "auto"/],
    ['socket_mode = "rw"', /octal mode/],
    ['host_id = 1 junk', /unexpected text after the value of "host_id"/],
    ['host_id 1', /expected "=" after "host_id"/],
    ['disk_lease_dir = "/x', /unterminated string/],
    ['lockspaces = [ "a", ', /unterminated list/],
    ['cleanup_min_age = "soon"', /duration/],
    ['fencing = "watchdog"', /fencing = "watchdog" is not valid; allowed: "guard", "wdmd", "none"/],
    ['fencing_mode = "dry-run"', /allowed: "enforce", "log"/],
    // a domain must not outlive its leases (libvirt's sanlock driver refuses on_lockfailure ignore)
    ['lease_failure_action = "ignore"', /:1: lease_failure_action = "ignore" is not supported: .*use "kill", "poweroff" or "pause"/],
    ['max_hosts = 0', /max_hosts = 0 is not valid; allowed: a number from 1 to 2000/],
    ['max_hosts = 2001', /allowed: a number from 1 to 2000/],
    ['max_hosts = 250\nhost_id = 251', /host_id = 251 is above max_hosts = 250: .*-228.*raise max_hosts or use a host_id from 1 to 250/],
    // 4096-byte sectors in 1 MiB hold 250 slots, whatever max_hosts says
    ['sector_size = 4096\nhost_id = 300', /:2: host_id = 300 is above sector_size = 4096 with align_size = 1M holds 250 host slots: .*use a larger align_size or a host_id from 1 to 250/],
    // libvirt's reader takes the first value, others the last: neither is guessed
    ['host_id = 1\nio_timeout = 5\nhost_id = 2', /^test\.conf:3: host_id is set more than once \(first at line 1\); keep one/],
    // each lockspaces entry is checked here, not by the daemon once it has begun joining
    ['lockspaces = [ "A:1" ]', /:1: lockspaces entry "A:1": .*LOCKSPACE:HOST_ID:PATH\[:OFFSET\]/],
    ['lockspaces = [ "A:1:/x:b:0" ]', /:1: lockspaces entry "A:1:\/x:b:0": .*has 5 fields/],
    ['lockspaces = [ "A:0:/x:0" ]', /lockspaces entry "A:0:\/x:0": host_id 0 is outside 1..2000/],
    ['lockspaces = [ "A:1:/x:0", "A:2:/y:0" ]', /lockspaces entry "A:2:\/y:0": lockspace A is also joined by another lockspaces entry, with another host_id, path or offset; keep one/],
    ['auto_disk_leases = 1\nhost_id = 1\nlockspaces = [ "__LIBVIRT__DISKS__:1:/x:0" ]', /:3: .*also joined by auto_disk_leases = 1/],
    ['cleanup_schedule = "every sunday"', /^test\.conf:1: cleanup_schedule = "every sunday" is not a cron expression .*give 5 fields/],
    // croner alone would take a year field (a single run in 2027)
    ['cleanup_schedule = "0 0 3 * * 0 2027"', /is not a cron expression/],
    ['socket_user = "no-such-user-la"', /:1: socket_user = "no-such-user-la": no such user in \/etc\/passwd/],
    ['socket_group = "no-such-group-la"', /:1: socket_group = "no-such-group-la": no such group in \/etc\/group/],
    // the daemon runs from /, the hook from libvirtd's directory
    ['state_path = "state.db"', /state_path = "state.db" must be an absolute path/],
    ['socket_path = ""', /socket_path must not be empty/],
    ['log_file = "lockagent.log"', /log_file = "lockagent.log" must be an absolute path \(or "" for no log file\)/],
  ])('refuses %j with a clear reason', (text, re) => {
    let err: unknown;
    try { parseConfig(text, 'test.conf'); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(re);
    expect((err as Error).message).toMatch(/^test\.conf/);
  });

  it('reports the line of the offending key', () => {
    expect(() => parseConfig('# c\n\nhost_id = 1\nbogus_key = 1\n', 'f.conf')).toThrow(/^f\.conf:4: unknown key "bogus_key"/);
     // also for the checks that look at several keys: the line of the key to change
    expect(() => parseConfig('max_hosts = 250\n\nhost_id = 251\n', 'f.conf')).toThrow(/^f\.conf:3: host_id = 251/);
    expect(() => parseConfig('# c\nmetrics_listen = "0.0.0.0:9478"\n', 'f.conf')).toThrow(/^f\.conf:2: metrics_listen/);
  });

  it('at run time (daemon, hook, CLI) what earlier versions accepted warns instead; what they refused at start still is an error', () => {
    const { config, warnings } = parseConfig('cleanup_schedule = "every sunday"\nstate_path = "state.db"\nsector_size = 4096\nhost_id = 300', 'r.conf', 'run');
    expect(config).toMatchObject({ cleanupSchedule: 'every sunday', statePath: 'state.db', hostId: 300 });
    expect(warnings).toEqual([
      expect.stringMatching(/^r\.conf:4: host_id = 300 is above sector_size = 4096 .*config check refuses it\)$/),
      expect.stringMatching(/^r\.conf:2: state_path = "state\.db" must be an absolute path/),
      expect.stringMatching(/^r\.conf:1: cleanup_schedule = "every sunday" is not a cron expression .*no sweep is scheduled/),
    ]);
    expect(() => parseConfig('lockspaces = [ "A:1" ]', 'r.conf', 'run')).toThrow(/lockspaces entry "A:1"/);
    expect(() => parseConfig('socket_user = "no-such-user-la"', 'r.conf', 'run')).toThrow(/no such user/);
    // the same lockspace twice was a no-op at start; two different ones under one name stopped it
    const same = 'auto_disk_leases = 1\nhost_id = 1\ndisk_lease_dir = "/d"\nlockspaces = [ "__LIBVIRT__DISKS__:1:/d/__LIBVIRT__DISKS__:0" ]';
    expect(parseConfig(same, 'r.conf', 'run').warnings).toEqual([expect.stringMatching(/^r\.conf:4: .*also joined by auto_disk_leases = 1 .*; keep one \(accepted/)]);
    expect(() => parseConfig(same, 'r.conf')).toThrow(/also joined by auto_disk_leases = 1/);
    expect(() => parseConfig(same.replace(':1:/d/', ':2:/d/'), 'r.conf', 'run')).toThrow(/with another host_id, path or offset; keep one/);
    expect(() => parseConfig('max_hosts = 250\nhost_id = 251', 'r.conf', 'run')).toThrow(/host_id = 251 is above max_hosts = 250/);
  });

  it('accepts what the refusals above leave: schedules of 5 or 6 fields or off, no log file, slots the geometry holds', () => {
    for (const sch of ['off', '', '*/5 * * * *', '0 0 3 * * 0', 'OFF']) expect(parseConfig(`cleanup_schedule = "${sch}"`).config.cleanupSchedule).toBe(sch);
    expect(parseConfig('log_file = ""').config.logFile).toBe('');
    expect(parseConfig('sector_size = 4096\nalign_size = "8M"\nhost_id = 300').config.hostId).toBe(300);
    expect(parseConfig('socket_user = "root"\nsocket_group = "root"').config).toMatchObject({ socketUser: 'root', socketGroup: 'root' });
    expect(parseConfig('auto_disk_leases = 0\nlockspaces = [ "__LIBVIRT__DISKS__:1:/x:0" ]').config.lockspaces).toEqual(['__LIBVIRT__DISKS__:1:/x:0']);
  });

  it('accepts lists spanning lines, comments and the obsolete libvirt key (with a warning)', () => {
    const { config, warnings } = parseConfig('lockspaces = [\n  "A:1:/x:0", # first\n  "B:2:/y:1M"\n]\nignore_readonly_and_shared_disks = 1\n');
    expect(config.lockspaces).toEqual(['A:1:/x:0', 'B:2:/y:1M']);
    expect(warnings.join()).toMatch(/obsolete/);
  });

  it('fencing defaults to the guard, enforcing; both keys take their documented values', () => {
    expect(parseConfig('').config).toMatchObject({ fencing: 'guard', fencingMode: 'enforce' });
    expect(parseConfig('fencing = "none"\nfencing_mode = "log"').config).toMatchObject({ fencing: 'none', fencingMode: 'log' });
    expect(parseConfig('fencing = "wdmd"').config.fencing).toBe('wdmd');
  });

  it('parses durations', () => {
    expect(parseDuration('90')).toBe(90);
    expect(parseDuration('15m')).toBe(900);
    expect(parseDuration('7d')).toBe(604800);
    expect(parseDuration('x')).toBeUndefined();
  });
});

/**
 * `lockagent config check -c PATH` (the real CLI) on what is not a config file: it must answer at
 * once with one line and exit 1, never hang (a FIFO), read forever (/dev/zero) or parse a huge
 * file into memory. The timeout fails the test instead of hanging it.
 */
describe('config check refuses what is not a config file', () => {
  let dir: string;
  beforeAll(() => { dir = makeTempDir('la-config-'); });
  afterAll(() => removeTempDir(dir));

  const check = async (path: string) => {
    const r = await lockagent(['config', 'check', '-c', path], { timeoutMs: 20000 });
    return { ...r, line: expectOneLine(r.stderr) };
  };

  it('/dev/zero: a character device', async () => {
    const r = await check('/dev/zero');
    expect(r.line).toBe('lockagent: config check: config file /dev/zero is a character device, not a regular file: pass the path of the config file itself');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
  });

  it('a FIFO nobody writes to', async () => {
    const fifo = join(dir, 'fifo.conf');
    execFileSync('mkfifo', [fifo]);
    const r = await check(fifo);
    expect(r.line).toBe(`lockagent: config check: config file ${fifo} is a FIFO, not a regular file: pass the path of the config file itself`);
    expect(r.code).toBe(1);
  });

  it('a directory', async () => {
    const r = await check(dir);
    expect(r.line).toMatch(/is a directory, not a regular file/);
    expect(r.code).toBe(1);
  });

  it('a 30 MB value: the file is over the size limit', async () => {
    const big = join(dir, 'big.conf');
    writeFileSync(big, `host_name = "${'x'.repeat(30 * 1024 * 1024)}"\n`);
    const r = await check(big);
    expect(r.line).toBe(`lockagent: config check: config file ${big} is larger than ${MAX_CONFIG_BYTES / 1024} KiB: that is not a lockagent config file`);
    expect(r.code).toBe(1);
  });

  it('a value over the value limit in a small enough file, with a short message', async () => {
    const long = join(dir, 'long.conf');
    writeFileSync(long, `host_id = 1\nhost_name = "${'y'.repeat(MAX_VALUE_BYTES + 1)}"\n`);
    const r = await check(long);
    expect(r.line).toBe(`lockagent: config check: ${long}:2: quoted value longer than ${MAX_VALUE_BYTES / 1024} KiB`);
    expect(r.code).toBe(1);
    // A syntax error quotes at most a short piece of the line.
    expect(() => parseConfig(`host_id = ${'z'.repeat(100000)}`, 't.conf')).toThrow(/^t\.conf:1: expected a value .* but found "z{77}\.\.\."$/);
  });

  it('what earlier versions accepted: config check refuses it, --as-daemon (as the daemon and the hook read it) warns and goes on', async () => {
    const legacy = join(dir, 'legacy.conf');
    writeFileSync(legacy, 'host_id = 1\nhost_id = 2\nlease_failure_action = "ignore"\n');
    const strict = await lockagent(['config', 'check', '-c', legacy], { timeoutMs: 20000 });
    expect({ code: strict.code, err: strict.stderr }).toMatchObject({ code: 1, err: expect.stringMatching(/legacy\.conf:2: host_id is set more than once \(first at line 1\)/) });
    const asDaemon = await lockagent(['config', 'check', '--as-daemon', '-c', legacy], { timeoutMs: 20000 });
    expect(asDaemon.code).toBe(0);
    expect(JSON.parse(asDaemon.stdout)).toMatchObject({ hostId: 2, leaseFailureAction: 'kill' });
    expect(asDaemon.stderr).toMatch(/warning: .*legacy\.conf:2: host_id is set more than once .*the last value is used \(accepted, as earlier versions did; lockagent config check refuses it\)/);
    expect(asDaemon.stderr).toMatch(/warning: .*legacy\.conf:3: lease_failure_action = "ignore" is not supported.*"kill" is used/);
  });

  it('a regular file still works', async () => {
    const ok = join(dir, 'ok.conf');
    writeFileSync(ok, 'auto_disk_leases = 0\n');
    const r = await lockagent(['config', 'check', '-c', ok], { timeoutMs: 20000 });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ autoDiskLeases: false });
  });
});
