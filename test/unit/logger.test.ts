/**
 * The agent's logger: each transport writes the levels it was given (sanlock's -L/-S habits),
 * and a level no transport takes is dropped.
 */
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import path from 'path';
import { createLogger, parseLevel } from '../../src/log/logger';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'la-logger-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function linesAt(fileLevel: 'info' | 'debug' | 'warning'): Promise<string[]> {
  const file = path.join(dir, `${fileLevel}.log`);
  const log = createLogger({ file, fileLevel, tag: 'h1' });
  log.debug('a debug line');
  log.info('an info line', { lease: 'LS:r1' });
  log.warning('a warning line');
  log.error('an error line');
  await log.close();
  return readFileSync(file, 'utf8').trim().split('\n').map((l) => l.replace(/^\S+ /, ''));
}

it('writes the levels up to the one asked for, in order, with tag and meta', async () => {
  expect(await linesAt('info')).toEqual([
    'h1 info    an info line {"lease":"LS:r1"}',
    'h1 warning a warning line',
    'h1 error   an error line',
  ]);
  expect(await linesAt('debug')).toEqual([
    'h1 debug   a debug line',
    'h1 info    an info line {"lease":"LS:r1"}',
    'h1 warning a warning line',
    'h1 error   an error line',
  ]);
  expect(await linesAt('warning')).toEqual(['h1 warning a warning line', 'h1 error   an error line']);
});

it('a logger with no transport is silent and closes at once', async () => {
  const log = createLogger({});
  log.error('nowhere');
  await expect(log.close()).resolves.toBeUndefined();
});

it('parses sanlock-style levels', () => {
  expect([parseLevel(7), parseLevel('6'), parseLevel('warn'), parseLevel(3), parseLevel(-1)]).toEqual(['debug', 'info', 'warning', 'error', undefined]);
  expect(() => parseLevel('loud')).toThrow('invalid log level "loud"');
});
