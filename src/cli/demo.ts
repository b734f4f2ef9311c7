/**
 * `lockagent demo`: the main job on an embedded default. Two hosts (two agents in this
 * process) share a local lease directory; host 1 drives libvirt's test:///default driver. It
 * shows a gated start allowed, a start refused because the other host holds the disk, and the
 * release on stop — the same hook requests libvirt sends, the same leases sanlock would write.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { startDaemon, DaemonHandle } from '../daemon/daemon';
import { defaultConfig, AgentConfig } from '../config/config';
import { callAgent } from '../control/client';
import { runHook } from '../libvirt/hook';
import { md5hex } from '../libvirt/leaseplan';
import { createLogger } from '../log/logger';
import { daemonExtensions } from '../daemon/extensions';
import { formatStatus } from './status-format';

const say = (s: string) => process.stdout.write(`${s}\n`);

function domainXml(name: string, uuid: string, disk: string): string {
  return `<domain type='test'><name>${name}</name><uuid>${uuid}</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices><disk type='file' device='disk'><source file='${disk}'/><target dev='vda' bus='virtio'/></disk></devices></domain>`;
}

export async function runDemo(opts: { dir?: string; keep?: boolean; verbose?: boolean }): Promise<number> {
  const base = opts.dir ?? mkdtempSync(join(tmpdir(), 'lockagent-demo-'));
  const leaseDir = join(base, 'leases');
  mkdirSync(leaseDir, { recursive: true });
  const hostConfig = (id: number, uri: string): AgentConfig => ({
    ...defaultConfig(), source: `(demo host ${id})`, autoDiskLeases: true, requireLeaseForDisks: false, diskLeaseDir: leaseDir,
    hostId: id, ioTimeout: 1, hostName: `demo-node${id}`, socketPath: join(base, `host${id}.sock`),
    statePath: join(base, `host${id}.db`), logFile: '', logStderr: false, libvirtUri: uri, cleanupSchedule: 'off',
  });
  const log = (id: number) => createLogger({ stderrLevel: opts.verbose ? 'info' : undefined, tag: `host${id}` });
  const hosts: DaemonHandle[] = [];
  try {
    say(`lockagent demo — lease directory ${leaseDir} (a local stand-in for the shared NFS mount)`);
    say('starting host 1 (libvirt test:///default) and host 2 (another host on the same directory), io_timeout 1 s ...');
    hosts.push(await startDaemon(hostConfig(1, 'test:///default'), daemonExtensions(), log(1)));
    hosts.push(await startDaemon(hostConfig(2, ''), daemonExtensions(), log(2)));
    await Promise.all(hosts.map((h) => [...h.agent.lockspaces.values()][0].waitJoined(30000)));
    say('both hosts joined lockspace __LIBVIRT__DISKS__ (delta leases, host_id 1 and 2)\n');

    const disk = '/var/lib/libvirt/images/demo.img';
    const uuid1 = '6d2e6a1c-2f0b-4d7e-9a51-1c9b6f0e0001';
    const xml1 = domainXml('demo-vm', uuid1, disk);
    say(`domain demo-vm has disk ${disk}: its lease is __LIBVIRT__DISKS__:${md5hex(disk)}`);

    // Host 1: libvirt would run the prepare hook; we send the same request, then start the domain.
    const { LibvirtConnection } = await import('../libvirt/connection');
    const conn = await LibvirtConnection.open('test:///default');
    try {
      await conn.defineXML(xml1);
      say('\n1) host 1: virsh start demo-vm  →  hook "prepare begin"');
      const r1 = await runHook(['demo-vm', 'prepare', 'begin', '-'], xml1, hosts[0].config.socketPath);
      if (r1.code !== 0) throw new Error(`unexpected refusal: ${r1.stderr}`);
      await conn.create(uuid1);
      say('   allowed: the disk lease is ours, the domain starts');
      const st = await callAgent(hosts[0].config.socketPath, { op: 'status' });
      say(formatStatus(st).replace(/^/gm, '   '));

      say('2) host 2: virsh start of a domain on the same disk  →  hook "prepare begin"');
      const xml2 = domainXml('demo-vm-copy', '6d2e6a1c-2f0b-4d7e-9a51-1c9b6f0e0002', disk);
      const r2 = await runHook(['demo-vm-copy', 'prepare', 'begin', '-'], xml2, hosts[1].config.socketPath, 20000);
      say(r2.code !== 0 ? `   refused, as virsh would show it:\n   error: Hook script execution failed: ${r2.stderr}` : '   UNEXPECTED: allowed');
      if (r2.code === 0) return 1;

      say('\n3) host 1: virsh destroy demo-vm  →  hook "stopped end" (and the STOPPED event): the lease is released');
      await conn.destroy(uuid1);
      // libvirt runs the stopped hook synchronously before destroy returns; the event may come later.
      await runHook(['demo-vm', 'stopped', 'end', '-'], xml1, hosts[0].config.socketPath);
      say('4) host 2: virsh start again  →  hook "prepare begin"');
      const r3 = await runHook(['demo-vm-copy', 'prepare', 'begin', '-'], xml2, hosts[1].config.socketPath, 20000);
      say(r3.code === 0 ? '   allowed: host 2 now holds the disk lease' : `   UNEXPECTED refusal: ${r3.stderr}`);
      await runHook(['demo-vm-copy', 'stopped', 'end', '-'], xml2, hosts[1].config.socketPath);
      say(`\nthe lease files are sanlock 3.8.5's format: try  sanlock direct dump ${join(leaseDir, md5hex(disk))} -f 2`);
      return r3.code === 0 ? 0 : 1;
    } finally {
      await conn.undefine(uuid1).catch(() => undefined);
      await conn.close();
    }
  } finally {
    for (const h of hosts.reverse()) await h.stop({ releaseAll: true }).catch(() => undefined);
    if (!opts.keep && !opts.dir) rmSync(base, { recursive: true, force: true });
  }
}
