/**
 * `lockagent direct dump PATH[:OFFSET[:SIZE]] [-f 1|2]` — the same walk and the same text as
 * `sanlock direct dump` (3.8.5 direct.c direct_dump):
 *
 *  1. Find the sector/align sizes: the first delta or paxos leader at OFFSET, OFFSET+1M, ... (up
 *     to 1024 probes, or SIZE), unless -Z/-A are given.
 *  2. Walk one align-size area at a time from OFFSET. Sector 0's magic decides what the area is:
 *     lockspace (rows for host_ids that were ever acquired), resource (leader row, dblocks with
 *     -f 2, shared holders), or resource index (header, entries with -f 1). Without SIZE the walk
 *     stops at the first area with any other magic (or one that does not fit in the file); with
 *     SIZE it covers SIZE bytes (a SIZE below one sector means "no limit", as in sanlock).
 *
 * Differences from sanlock (never in what a valid lease prints): a resource whose num_hosts
 * reaches past its area is read only up to the end of the area (sanlock reads past its buffer),
 * and names are never printed past their 48 bytes.
 */
import {
  DELTA_DISK_MAGIC, MBLOCK_SHARED, PAXOS_DISK_MAGIC, RINDEX_DISK_MAGIC,
} from '../ondisk/constants';
import { MiB, Geometry } from '../ondisk/sizes';
import { verifyDblocks, verifyDeltaLeader, verifyPaxosLeader } from '../ondisk/verify';
import { DumpTarget, escapePath } from '../config/sanlockargs';
import { CliContext, EXIT_FAILED, EXIT_OK } from './context';
import {
  dblockJson, leaderJson, modeBlockJson, requestJson, rindexEntryJson, rindexHeaderJson, verdictJson,
} from './json';
import { failureLine } from './messages';
import { openTarget } from './open-target';
import {
  bitmapHostIds, formatDblockLine, formatDeltaRow, formatDumpHeader, formatPaxosRow, formatRentryLine,
  formatRindexHeaderLine, formatSharedLine, readRawDblock, readRawLeader, readRawModeBlock, readRawRequest,
  readRawRindexEntry, readRawRindexHeader,
} from './sanlock-format';
import { readLeaderSizes, ReadableStorage, sanlockRead, sizeToMaxHosts } from './sanlock-io';

/** sanlock's dump reads with DEFAULT_IO_TIMEOUT (10 s). */
const DUMP_IO_TIMEOUT_MS = 10_000;
/** sanlock probes for a leader every 1 MiB, at most 1024 times (1 GiB). */
const SIZE_PROBES = 1024;
const RINDEX_ENTRY_SIZE = 64;

export interface DumpOptions {
  target: DumpTarget;
  forceMode: 0 | 1 | 2;
  geometry?: Geometry;
  json?: boolean;
}

type Json = Record<string, unknown>;

interface DumpSink {
  text(s: string): void;
}

/**
 * The walk itself, over any readable storage. Text goes to `sink` as sanlock would print it;
 * the returned areas are the same data for --json.
 */
export async function dumpLikeSanlock(
  s: ReadableStorage, o: DumpOptions, sink: DumpSink,
): Promise<{ rv: number; sectorSize?: number; alignSize?: number; maxHosts?: number; areas: Json[]; message?: string }> {
  const { offset: start, size: dumpSize } = o.target;
  const areas: Json[] = [];
  let sectorSize = 0;
  let alignSize = 0;
  if (o.geometry) {
    sectorSize = o.geometry.sectorSize;
    alignSize = o.geometry.alignSize;
  } else {
    let off = start;
    for (let i = 0; i < SIZE_PROBES; i++) {
      if (off + 4096 > s.info.size) break; // every later probe would be a short read too
      const r = await readLeaderSizes(s, off, DUMP_IO_TIMEOUT_MS);
      if (r.rv === 0 && 'sectorSize' in r && r.sectorSize && r.alignSize) {
        sectorSize = r.sectorSize;
        alignSize = r.alignSize;
        break;
      }
      off += MiB;
      if (dumpSize && off >= start + dumpSize) break;
    }
    if (!sectorSize || !alignSize) {
      sink.text('Cannot find sector_size and align_size, set with -A and -Z.\n');
      return { rv: -1, areas, message: `no delta or paxos leader found at ${start} or at any MiB after it${dumpSize ? ` within ${dumpSize} bytes` : ''}, so the sector/align sizes are unknown` };
    }
  }
  if (alignSize < 0) {
    // sanlock: old-rule align of an unknown sector size is -1; its malloc(-1) fails
    return { rv: -12, areas, message: `the leader gives sector size ${sectorSize >>> 0} and no align flag` };
  }
  const maxHosts = sizeToMaxHosts(sectorSize, alignSize);
  sink.text(formatDumpHeader(o.forceMode));
  if (sectorSize !== 512 && sectorSize !== 4096) {
    // every read_sectors() fails with -EINVAL: sanlock prints the header and nothing else
    return { rv: 0, sectorSize, alignSize, maxHosts, areas };
  }
  const sectorCount = Math.trunc(alignSize / sectorSize);
  const endSector = dumpSize ? Math.floor(dumpSize / sectorSize) : 0;

  for (let sectorNr = 0; endSector === 0 || sectorNr < endSector; sectorNr += sectorCount) {
    const areaOff = start + sectorNr * sectorSize;
    if (areaOff >= s.info.size) break; // reads from here on fail: nothing more is printed
    const r = await sanlockRead(s, areaOff, alignSize, DUMP_IO_TIMEOUT_MS);
    const data = r.rv === 0 ? r.data : undefined;
    const magic = data ? data.readUInt32LE(0) : 0;

    if (magic === DELTA_DISK_MAGIC && data) {
      const hosts: Json[] = [];
      let text = '';
      for (let i = 0; i < sectorCount; i++) {
        const recOff = i * sectorSize;
        if (data.readUInt32LE(recOff) === 0) continue;
        const l = readRawLeader(data, recOff);
        if (!l.ownerId && !l.ownerGeneration) continue; // never acquired
        const rowOff = start + (sectorNr + i) * sectorSize;
        const bits = o.forceMode ? bitmapHostIds(data, recOff, maxHosts) : undefined;
        text += formatDeltaRow(rowOff, l, bits);
        hosts.push({
          offset: rowOff, hostId: i + 1, leader: leaderJson(l, true),
          verdict: verdictJson(verifyDeltaLeader(data, recOff, l.spaceName).rv),
          ...(bits ? { bitmap: bits } : {}),
        });
      }
      sink.text(text);
      areas.push({ offset: areaOff, kind: 'lockspace', hosts });
    } else if (magic === PAXOS_DISK_MAGIC && data) {
      const l = readRawLeader(data, 0);
      const req = o.forceMode ? readRawRequest(data, sectorSize) : undefined;
      let text = formatPaxosRow(areaOff, l, req);
      const dblocks: Json[] = [];
      const shared: Json[] = [];
      let usable = 0;
      for (let i = 0; BigInt(i) < l.numHosts; i++) {
        const sec = (2 + i) * sectorSize;
        if (sec + sectorSize > alignSize) break; // sanlock would read past its buffer
        usable = i + 1;
        if (o.forceMode > 1) {
          const d = readRawDblock(data, sec);
          if (d.mbal || d.inp || d.lver) {
            text += formatDblockLine(i, d);
            dblocks.push({ index: i, hostId: i + 1, ...dblockJson(d) });
          }
        }
        const mb = readRawModeBlock(data, sec);
        if (!(mb.flags & MBLOCK_SHARED)) continue;
        text += formatSharedLine(i + 1, mb.generation);
        shared.push({ hostId: i + 1, ...modeBlockJson(mb) });
      }
      sink.text(text);
      let verdict = verifyPaxosLeader(data, 0, l.spaceName, l.resourceName, 0).rv;
      if (verdict === 0) verdict = verifyDblocks(data, usable, sectorSize);
      areas.push({
        offset: areaOff, kind: 'resource', leader: leaderJson(l, false), verdict: verdictJson(verdict),
        ...(req ? { request: requestJson(req) } : {}),
        ...(o.forceMode > 1 ? { dblocks } : {}),
        shared,
      });
    } else if (magic === RINDEX_DISK_MAGIC && data) {
      const h = readRawRindexHeader(data, 0);
      let text = formatRindexHeaderLine(areaOff, h);
      const entries: Json[] = [];
      if (o.forceMode) {
        const perSector = Math.trunc(sectorSize / RINDEX_ENTRY_SIZE);
        for (let i = 1; i < sectorCount; i++) {
          for (let j = 0; j < perSector; j++) {
            const eo = i * sectorSize + j * RINDEX_ENTRY_SIZE;
            const e = readRawRindexEntry(data, eo);
            if (!e.resOffset && !e.name) continue;
            text += formatRentryLine(areaOff + eo, h.lockspaceName, e);
            entries.push({ offset: areaOff + eo, ...rindexEntryJson(e) });
          }
        }
      }
      sink.text(text);
      areas.push({ offset: areaOff, kind: 'rindex', header: rindexHeaderJson(h), ...(o.forceMode ? { entries } : {}) });
    } else if (endSector === 0) {
      break;
    }
  }
  return { rv: 0, sectorSize, alignSize, maxHosts, areas };
}

export async function directDump(ctx: CliContext, o: DumpOptions): Promise<number> {
  const out = ctx.output;
  const { path, offset, size } = o.target;
  // with --json the sanlock text is not printed: the same data goes out as JSON at the end
  const sink: DumpSink = { text: (t) => { if (t && !o.json) out.out(t); } };
  const warnings: string[] = [];
  const base = { action: 'dump', path, offset, size, forceMode: o.forceMode };

  if (offset % MiB !== 0) {
    sink.text('WARNING: dump offset should be a multiple of 1048576 bytes.\n');
    warnings.push('dump offset should be a multiple of 1048576 bytes');
  }
  const opened = await openTarget(ctx, path, 'read', { timeoutMs: DUMP_IO_TIMEOUT_MS });
  if (!opened.ok) {
    sink.text(`Device ${path} not found.\n`);
    if (o.json) out.json({ ...base, rv: -19, result: verdictJson(-19), error: opened.message, warnings, areas: [] });
    out.err(`lockagent: dump ${escapePath(path)} failed: ${opened.message}`);
    return EXIT_FAILED;
  }
  let res: Awaited<ReturnType<typeof dumpLikeSanlock>>;
  try {
    res = await dumpLikeSanlock(opened.storage, o, sink);
  } finally {
    await opened.storage.close().catch(() => undefined);
  }
  if (o.json) {
    out.json({
      ...base, rv: res.rv, result: verdictJson(res.rv),
      ...(res.message ? { error: res.message } : {}),
      warnings,
      ...(res.sectorSize !== undefined ? { sectorSize: res.sectorSize, alignSize: res.alignSize, maxHosts: res.maxHosts } : {}),
      areas: res.areas,
    });
  }
  if (res.rv !== 0) {
    out.err(failureLine(`dump ${escapePath(path)}:${offset}`, res.rv, '', 'check the path and offset, or give the sizes with -Z and -A', res.message));
    return EXIT_FAILED;
  }
  return EXIT_OK;
}
