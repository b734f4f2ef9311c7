/**
 * `lockagent who DISK | DOMAIN | -r LS:RES:PATH:OFF`: who holds a lease, in one line per lease.
 *
 * The lease is read on disk (read-only, like `direct read_leader`), so it works without an
 * agent and on leases held by sanlock hosts. The holder's name, generation and last renewal
 * come from its delta lease in the lockspace (`direct read_leader -s`). Its state comes from
 * the agent's host monitor when an agent runs and has joined the lockspace (the table of
 * `lockagent host_status`); without one, from reading the lockspace twice 2·io + 1 s apart:
 * LIVE if the holder renewed meanwhile, else UNKNOWN (proving a host dead takes host_dead).
 * A DISK path names its automatic lease (disk_lease_dir/md5 of the path); a DOMAIN (name or
 * uuid) names the leases the agent holds for it, so it needs the agent.
 */
import { basename, dirname, join } from 'path';
import { AgentConfig, DISKS_LOCKSPACE } from '../config/config';
import { AgentUnreachable, callAgent } from '../control/client';
import { md5hex } from '../libvirt/leaseplan';
import { WatchView } from '../cleanup/liveness';
import { MBLOCK_SHARED } from '../ondisk/constants';
import { Geometry, geometryFor } from '../ondisk/sizes';
import { timeoutsFor } from '../lease/timeouts';
import { parseLockspaceArg, parseResourceArg, UsageError } from '../config/sanlockargs';
import { CliContext, EXIT_FAILED, EXIT_OK } from './context';
import { readDeltaLeaderLikeSanlock, readPaxosLeaderLikeSanlock } from './direct-read-leader';
import { describeResult, SANLK } from '../ondisk/results';
import { openTarget } from './open-target';
import { RawLeader, readRawModeBlock } from './sanlock-format';
import { readLeaderSizes, sanlockRead } from './sanlock-io';
import { HostStatusReply, StatusReply } from './status-format';

export interface WhoOptions {
  target?: string;
  resource?: string;
  /** where the lockspace lives, when neither the agent nor the config says: LS:0:PATH:OFF */
  lockspace?: string;
  config: AgentConfig;
  socket: string;
  json?: boolean;
  /** no second read of the lockspace (faster; host states stay UNKNOWN without an agent) */
  noWatch?: boolean;
}

interface LeaseRef {
  lockspace: string;
  resource: string;
  path: string;
  offset: number;
  disk?: string;
  owner?: { uuid: string; name: string };
}

export interface HostInfo {
  hostId: number;
  name?: string;
  generation?: number;
  /** LIVE, FAIL, DEAD, FREE, UNKNOWN; absent when the lockspace could not be read */
  state?: string;
  /** seconds since its renewal was last seen changing (agent) or the watch length (no agent) */
  renewalAgeSeconds?: number;
  /** its delta lease timestamp (its monotonic clock) */
  deltaTimestamp?: number;
  thisHost?: boolean;
}

export interface WhoResult {
  lockspace: string;
  resource: string;
  path: string;
  offset: number;
  disk?: string;
  rv: number;
  error?: string;
  state?: 'held' | 'free';
  mode?: 'exclusive' | 'shared';
  lver?: number;
  /** exclusive holder (or the last one, when free) */
  holder?: HostInfo & { leaseGeneration: number; since?: string; sinceApprox?: boolean; leaderTimestamp: number; stale?: string };
  shared?: Array<HostInfo & { leaseGeneration: number; stale?: string }>;
  owners?: Array<{ uuid: string; name: string }>;
  hostSource?: string;
}

async function tryAgent(socket: string): Promise<{ status: StatusReply; hosts: HostStatusReply } | undefined> {
  try {
    const status = await callAgent(socket, { op: 'status' }, 5000);
    const hosts = await callAgent(socket, { op: 'host_status' }, 5000);
    return { status, hosts };
  } catch (e) {
    if (e instanceof AgentUnreachable) return undefined;
    throw e;
  }
}

function leasesOf(o: WhoOptions, agent: Awaited<ReturnType<typeof tryAgent>>): LeaseRef[] {
  if (o.resource !== undefined) {
    if (o.target !== undefined) throw new UsageError('give either DISK|DOMAIN or -r, not both');
    const r = parseResourceArg(o.resource);
    return [{ lockspace: r.lockspace, resource: r.resource, path: r.path, offset: r.offset }];
  }
  const t = o.target;
  if (!t) throw new UsageError('needs DISK, DOMAIN or -r LOCKSPACE:RESOURCE:PATH:OFFSET');
  if (t.startsWith('/')) {
    const dir = o.config.diskLeaseDir.replace(/\/+$/, '');
    if (dirname(t) === dir && /^[0-9a-f]{32}$/.test(basename(t))) {
      return [{ lockspace: DISKS_LOCKSPACE, resource: basename(t), path: t, offset: 0 }]; // the lease file itself
    }
    const name = md5hex(t);
    return [{ lockspace: DISKS_LOCKSPACE, resource: name, path: join(dir, name), offset: 0, disk: t }];
  }
  if (!agent) {
    throw new UsageError(`"${t}" is not a path, so it names a domain, and which leases a domain holds only the running agent knows ` +
      '(none answered): give the disk path, or -r LOCKSPACE:RESOURCE:PATH:OFFSET');
  }
  const owner = agent.status.owners.find((x) => x.name === t || x.uuid === t);
  if (!owner) throw new UsageError(`the agent holds no leases for a domain or owner "${t}" (lockagent status lists them)`);
  return owner.leases.map((l) => ({ ...l, owner: { uuid: owner.uuid, name: owner.name } }));
}

/** Where lockspace `name` lives: the agent's, -s, lockspaces = [...], or the disk lease directory. */
function lockspaceLocation(name: string, o: WhoOptions, agent: Awaited<ReturnType<typeof tryAgent>>): { path: string; offset: number } | undefined {
  const joined = agent?.status.lockspaces.find((l) => l.name === name);
  if (joined) return joined;
  for (const s of [o.lockspace, ...o.config.lockspaces]) {
    if (!s) continue;
    const l = parseLockspaceArg(s);
    if (l.name === name) return l;
  }
  if (name === DISKS_LOCKSPACE) return { path: join(o.config.diskLeaseDir, DISKS_LOCKSPACE), offset: 0 };
  return undefined;
}

const big = (v: bigint) => Number(v);

interface LeaseRead {
  rv: number;
  error?: string;
  raw?: RawLeader;
  shared: Array<{ hostId: number; generation: number }>;
}

/** The leader (checked as `direct read_leader -r` checks it) and the shared holders' mode blocks. */
async function readLease(ctx: CliContext, l: LeaseRef, timeoutMs: number): Promise<LeaseRead> {
  const opened = await openTarget(ctx, l.path, 'read', { timeoutMs });
  if (!opened.ok) return { rv: -19, error: opened.message, shared: [] };
  try {
    const sizes = await readLeaderSizes(opened.storage, l.offset, timeoutMs);
    if (sizes.rv !== 0 || !('sectorSize' in sizes)) return { rv: sizes.rv || -223, error: `${l.path}:${l.offset} holds no lease (no leader record)`, shared: [] };
    let g: Geometry;
    try {
      g = geometryFor(sizes.sectorSize, sizes.alignSize);
    } catch (e) {
      return { rv: SANLK.EINVAL, error: (e as Error).message, shared: [] };
    }
    const r = await readPaxosLeaderLikeSanlock(opened.storage, l, g, timeoutMs);
    if (r.rv !== 0 || !r.leader) return { rv: r.rv, error: r.detail || describeResult(r.rv), shared: [] };
    const area = await sanlockRead(opened.storage, l.offset, sizes.alignSize, timeoutMs);
    const shared: Array<{ hostId: number; generation: number }> = [];
    if (area.rv === 0 && area.data) {
      for (let i = 0; i < big(r.leader.numHosts) && (3 + i) * sizes.sectorSize <= sizes.alignSize; i++) {
        const mb = readRawModeBlock(area.data, (2 + i) * sizes.sectorSize);
        if (mb.flags & MBLOCK_SHARED) shared.push({ hostId: i + 1, generation: big(mb.generation) });
      }
    }
    return { rv: 0, raw: r.leader, shared };
  } finally {
    await opened.storage.close().catch(() => undefined);
  }
}

/** The delta leases of `ids` in the lockspace, and their state (agent, or two reads). */
async function hostsOf(
  ctx: CliContext, lsName: string, ids: number[], o: WhoOptions, agent: Awaited<ReturnType<typeof tryAgent>>, timeoutMs: number,
): Promise<{ hosts: Map<number, HostInfo>; source: string }> {
  const hosts = new Map<number, HostInfo>();
  const loc = lockspaceLocation(lsName, o, agent);
  if (!loc) return { hosts, source: `lockspace ${lsName}: location unknown (give -s ${lsName}:0:PATH:OFFSET)` };
  const opened = await openTarget(ctx, loc.path, 'read', { timeoutMs });
  if (!opened.ok) return { hosts, source: `lockspace ${lsName}: ${opened.message}` };
  try {
    for (const id of ids) {
      const d = await readDeltaLeaderLikeSanlock(opened.storage, { name: lsName, hostId: id, path: loc.path, offset: loc.offset }, undefined, timeoutMs);
      hosts.set(id, d.rv === 0 && d.leader
        ? { hostId: id, name: d.leader.resourceName, generation: big(d.leader.ownerGeneration), deltaTimestamp: big(d.leader.timestamp) }
        : { hostId: id });
    }
  } finally {
    await opened.storage.close().catch(() => undefined);
  }
  const joined = agent?.status.lockspaces.find((l) => l.name === lsName && l.state === 'joined');
  const table = agent?.hosts.find((h) => h.lockspace === lsName);
  if (joined && table) {
    for (const h of hosts.values()) {
      const t = table.hosts.find((x) => x.hostId === h.hostId);
      if (t) Object.assign(h, { state: t.state, renewalAgeSeconds: t.ageSeconds });
      h.thisHost = h.hostId === joined.hostId && h.generation === joined.generation;
    }
    return { hosts, source: `host states from the agent (joined as host ${joined.hostId})` };
  }
  if (loc.offset !== 0) return { hosts, source: `lockspace ${lsName} at offset ${loc.offset}: host states need the agent` };
  try {
    const view = await WatchView.read(loc.path, lsName, o.config.ioTimeout);
    if (!o.noWatch && ids.length) await view.watch(view.watchSeconds(ids));
    for (const h of hosts.values()) {
      const v = view.host(h.hostId);
      if (v) Object.assign(h, { state: v.state, renewalAgeSeconds: view.watched ? v.ageSeconds : undefined });
    }
    return { hosts, source: view.source };
  } catch (e) {
    return { hosts, source: `lockspace ${lsName}: ${(e as Error).message}` };
  }
}

/** Why a holder's lease no longer protects anything, if it does not. */
function staleness(h: HostInfo, leaseGeneration: number): string | undefined {
  if (h.state === 'FREE') return `host ${h.hostId} left the lockspace`;
  if (h.state === 'DEAD') return `host ${h.hostId} is DEAD`;
  if (h.generation !== undefined && h.generation > leaseGeneration) return `host ${h.hostId} joined again since (generation ${h.generation})`;
  return undefined;
}

export async function who(ctx: CliContext, o: WhoOptions): Promise<number> {
  const agent = await tryAgent(o.socket);
  const leases = leasesOf(o, agent);
  const timeoutMs = o.config.ioTimeout * 1000;
  const results: WhoResult[] = [];
  for (const l of leases) {
    const r: WhoResult = { lockspace: l.lockspace, resource: l.resource, path: l.path, offset: l.offset, disk: l.disk, rv: 0 };
    results.push(r);
    const read = await readLease(ctx, l, timeoutMs);
    if (read.rv !== 0 || !read.raw) {
      Object.assign(r, { rv: read.rv, error: read.error });
      continue;
    }
    const lead = read.raw;
    const exclusive = lead.timestamp !== 0n && lead.ownerId !== 0n;
    r.lver = big(lead.lver);
    r.state = exclusive || read.shared.length ? 'held' : 'free';
    if (r.state === 'held') r.mode = exclusive ? 'exclusive' : 'shared';
    const ids = [...new Set([...(lead.ownerId ? [big(lead.ownerId)] : []), ...read.shared.map((s) => s.hostId)])];
    const { hosts, source } = await hostsOf(ctx, l.lockspace, r.state === 'held' ? ids : [], o, agent, timeoutMs);
    r.hostSource = source;
    if (lead.ownerId) {
      const id = big(lead.ownerId);
      const h = hosts.get(id) ?? { hostId: id };
      const leaseGeneration = big(lead.ownerGeneration);
      const ts = big(lead.timestamp);
      let since: string | undefined;
      let approx = false;
      if (exclusive && h.thisHost) {
        // our own clock: exact (the timestamp is whole seconds of the same monotonic clock)
        since = wallTime(Date.now() - (Number(process.hrtime.bigint()) / 1e9 - ts) * 1000);
      } else if (exclusive && h.deltaTimestamp && h.generation === leaseGeneration && h.state === 'LIVE') {
        // The holder's clock read deltaTimestamp at its last renewal, at most one renewal ago.
        // Its delta may predate the acquire (renewed just before): never later than now.
        since = wallTime(Date.now() - Math.max(0, h.deltaTimestamp - ts) * 1000);
        approx = true;
      }
      r.holder = { ...h, leaseGeneration, leaderTimestamp: ts, since, sinceApprox: approx || undefined, stale: exclusive ? staleness(h, leaseGeneration) : undefined };
      if (!exclusive) r.holder = { ...r.holder, since: undefined };
    }
    if (read.shared.length) {
      r.shared = read.shared.map((s) => {
        const h = hosts.get(s.hostId) ?? { hostId: s.hostId };
        return { ...h, leaseGeneration: s.generation, stale: staleness(h, s.generation) };
      });
    }
    if (agent) {
      const mine = agent.status.owners.filter((ow) => ow.leases.some((x) => x.path === l.path && x.offset === l.offset));
      if (mine.length && (r.holder?.thisHost || r.shared?.some((s) => s.thisHost))) r.owners = mine.map((ow) => ({ uuid: ow.uuid, name: ow.name }));
    }
  }
  if (o.json) ctx.output.json(results);
  else ctx.output.out(results.map((r) => `${formatWho(r, o.config.ioTimeout)}\n`).join(''));
  for (const r of results) if (r.rv !== 0) ctx.output.err(`lockagent: who ${r.lockspace}:${r.resource}: ${r.error} (${describeResult(r.rv)})`);
  return results.every((r) => r.rv === 0) ? EXIT_OK : EXIT_FAILED;
}

/** ISO time to the second (leader timestamps are whole seconds). */
function wallTime(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

function hostText(h: HostInfo & { stale?: string }): string {
  const parts = [`host ${h.hostId}${h.name ? ` "${h.name}"` : ''}`];
  const st = h.state ? `${h.state}${h.renewalAgeSeconds !== undefined ? `, renewal seen ${h.renewalAgeSeconds} s ago` : ''}` : 'state unknown';
  parts.push(`(${st}${h.thisHost ? ', this host' : ''})`);
  if (h.stale) parts.push(`— stale: ${h.stale}, the lease is free to take`);
  return parts.join(' ');
}

/** One line: what, held or free, by whom, since when, the holder's state, and our owner. */
export function formatWho(r: WhoResult, ioTimeout: number): string {
  const what = `${r.lockspace}:${r.resource}${r.disk ? ` (disk ${r.disk})` : ''}`;
  if (r.rv !== 0) return `${what}: unreadable: ${r.error}`;
  if (r.state === 'free') {
    const last = r.holder ? `; last held by host ${r.holder.hostId}${r.holder.name ? ` "${r.holder.name}"` : ''}` : '';
    return `${what}: free (lver ${r.lver}${last})`;
  }
  let s = `${what}: held ${r.mode}`;
  if (r.mode === 'exclusive' && r.holder) {
    s += ` by ${hostText(r.holder)}, generation ${r.holder.leaseGeneration}, lver ${r.lver}`;
    s += r.holder.since ? `, since ${r.holder.since}${r.holder.sinceApprox ? ` (±${timeoutsFor(ioTimeout).idRenewal} s)` : ''}` : `, leader timestamp ${r.holder.leaderTimestamp}`;
  }
  if (r.shared?.length) s += `${r.mode === 'exclusive' ? '; shared' : ''} by ${r.shared.map(hostText).join(', ')}`;
  if (r.owners?.length) s += `; owner ${r.owners.map((x) => `${x.name} (${x.uuid})`).join(', ')}`;
  return s;
}
