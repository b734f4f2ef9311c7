import { formatRenewal, RenewalHistory } from '../../src/agent/renewals';
import { SANLK } from '../../src/ondisk';

describe('renewal history (sanlock client renewal)', () => {
  it('keeps the last N renewals, oldest first, and counts failed attempts after each', () => {
    const h = new RenewalHistory(3);
    h.failure(SANLK.AIO_TIMEOUT); // before any success: nothing to attach it to
    for (let t = 10; t <= 18; t += 2) h.success(t, 1.4, 0.6);
    h.failure(SANLK.AIO_TIMEOUT);
    h.failure(SANLK.AIO_TIMEOUT);
    h.failure(SANLK.EIO);
    const l = h.list();
    expect(l.map((r) => r.timestamp)).toEqual([14, 16, 18]);
    expect(l[2]).toEqual({ timestamp: 18, readMs: 1, writeMs: 1, nextTimeouts: 2, nextErrors: 1 });
    expect(l[0].nextTimeouts + l[0].nextErrors).toBe(0);
    expect(formatRenewal(l[2])).toBe('timestamp=18 read_ms=1 write_ms=1 next_timeouts=2 next_errors=1');
  });

  it('hands out copies', () => {
    const h = new RenewalHistory();
    h.success(5, 1, 1);
    h.list()[0].nextErrors = 9;
    expect(h.list()[0].nextErrors).toBe(0);
  });
});
