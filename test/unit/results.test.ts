/**
 * resultInfo (src/ondisk/results.ts): the one naming of a result code, which the CLI's lines and
 * JSON, `lockagent explain` and the client's AgentError all use. sanlock prints only the number;
 * the names are lockagent's (docs/cli.md, "Result codes and their names").
 */
import { AgentError } from '../../src/control/client';
import { allResults, describeResult, explainResult, resultInfo, SANLK } from '../../src/ondisk/results';

describe('resultInfo', () => {
  it('names sanlock_rv.h\'s codes and the errnos of the table by the table', () => {
    expect(resultInfo(-243)).toMatchObject({ code: -243, name: 'SANLK_ACQUIRE_IDLIVE' });
    expect(resultInfo(-28).name).toBe('ENOSPC');
    expect(resultInfo(0).name).toBe('OK');
  });

  it('-1 is sanlock\'s generic failure, FAILED (not EPERM, and not SANLK_ERROR\'s short name) (sanlock\'s sources never mean EPERM)', () => {
    expect(resultInfo(-1)).toMatchObject({ name: 'FAILED', meaning: 'the operation failed' });
    expect(explainResult(-1)?.name).toBe('FAILED');
    expect(explainResult('-1')?.name).toBe('FAILED');
    expect(describeResult(-1)).toBe('the operation failed (sanlock -1 FAILED)');
    expect(explainResult('ERROR')?.code).toBe(-201); // lockagent explain ERROR is SANLK_ERROR, as before
  });

  it('names the codes of the direct commands beside the table (-90 EMSGSIZE, -19 ENODEV, ...)', () => {
    expect(resultInfo(-90).name).toBe('EMSGSIZE');
    expect(resultInfo(-19).name).toBe('ENODEV');
    expect(explainResult(-90)?.meaning).toMatch(/short read/);
  });

  it('any other errno by its errno name; a code that is none UNKNOWN (never a name of another code)', () => {
    expect(resultInfo(-9)).toMatchObject({ name: 'EBADF', meaning: expect.stringMatching(/^system error EBADF/) });
    expect(resultInfo(-4)).toMatchObject({ name: 'EINTR' });
    expect(resultInfo(-999)).toMatchObject({ name: 'UNKNOWN', meaning: 'result -999, which neither sanlock nor lockagent defines' });
    // libuv's own codes are not errnos
    expect(resultInfo(-4095).name).toBe('UNKNOWN');
    expect(resultInfo(5).name).toBe('UNKNOWN');
    expect(describeResult(-9)).toMatch(/^system error EBADF.* \(sanlock -9 EBADF\)$/);
  });

  it('every code explain lists reads the same through resultInfo, once each', () => {
    const all = allResults();
    expect(new Set(all.map((r) => r.code)).size).toBe(all.length);
    for (const r of all) expect(resultInfo(r.code)).toBe(r);
    expect(all.map((r) => r.code)).toEqual([...all.map((r) => r.code)].sort((a, b) => b - a));
  });

  it('SANLK names sanlock_rv.h\'s codes; SANLK.ERROR stays -201', () => {
    expect(SANLK.ERROR).toBe(-201);
    expect(explainResult('SANLK_ERROR')?.code).toBe(-201);
    expect('EPERM' in SANLK).toBe(false);
  });
});

describe('AgentError', () => {
  it('names its code as resultInfo does, whatever name the reply carried', () => {
    expect(new AgentError(-9, 'no such file').rvName).toBe('EBADF');
    expect(new AgentError(-1, 'x').rvName).toBe('FAILED');
    expect(new AgentError(-243, 'x').rvName).toBe('SANLK_ACQUIRE_IDLIVE');
  });
});
