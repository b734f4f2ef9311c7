'use strict';
/**
 * A cheap stand-in for many live hosts (scale.js): renews the delta leases of host ids
 * FIRST..LAST in each lockspace file every PERIOD ms — one write of the contiguous sectors per
 * file, each sector a sealed delta leader (valid checksum) with the current monotonic timestamp,
 * generation 1 and its own host name — so a daemon sharing the lockspace sees that many hosts
 * alive. Runs until killed; prints "ready" once the first round is on disk.
 *
 *   node hostwriter.js DIST_DIR PERIOD_MS FIRST LAST SPACE:FILE:IO_TIMEOUT...
 */
const fs = require('fs');
const path = require('path');

const [dist, periodMs, first, last, ...spaces] = process.argv.slice(2);
const od = require(path.join(dist, 'ondisk'));
const g = od.DEFAULT_GEOMETRY;
const lo = Number(first);
const hi = Number(last);

const targets = spaces.map((s) => {
  const [spaceName, file, io] = s.split(':');
  const fd = fs.openSync(file, 'r+');
  const buf = Buffer.alloc((hi - lo + 1) * g.sectorSize);
  const base = { ...od.freshDeltaLeader({ spaceName, geometry: g, ioTimeout: Number(io) }), ownerGeneration: 1 };
  return { fd, buf, base };
});

const monotime = () => Math.floor(Number(process.hrtime.bigint() / 1000000000n));

function round() {
  const ts = monotime();
  for (const t of targets) {
    for (let h = lo; h <= hi; h++) {
      od.sealLeaderInto({ ...t.base, ownerId: h, timestamp: ts, resourceName: `bench-host-${h}` }, t.buf, (h - lo) * g.sectorSize);
    }
    fs.writeSync(t.fd, t.buf, 0, t.buf.length, (lo - 1) * g.sectorSize);
    fs.fdatasyncSync(t.fd);
  }
}

round();
process.stdout.write('ready\n');
setInterval(round, Number(periodMs));
