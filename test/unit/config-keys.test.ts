/**
 * The shipped conf/lockagent.conf: it passes config check as shipped and with every commented
 * example key enabled, it documents exactly the keys the agent accepts, and every key is read
 * somewhere outside the config module (a key nothing reads is a promise the agent does not keep).
 */
import * as fs from 'fs';
import * as path from 'path';
import { configField, configKeys, parseConfig } from '../../src/config/config';

const ROOT = path.resolve(__dirname, '..', '..');
const CONF = path.join(ROOT, 'conf', 'lockagent.conf');
const text = fs.readFileSync(CONF, 'utf8');
/** `key = value` lines, commented-out examples (`#key = value`) included */
const KEY_LINE = /^#?([a-z_]+)\s*=/;
const documented = text.split('\n').map((l) => KEY_LINE.exec(l)?.[1]).filter((k): k is string => !!k);

/** Keys the config module turns into other fields; those fields must be read elsewhere. */
const DERIVED: Record<string, string[]> = { user: ['userId'], group: ['groupId'] };

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []);
}

describe('conf/lockagent.conf', () => {
  it('passes config check as shipped and with every example enabled', () => {
    expect(() => parseConfig(text, CONF)).not.toThrow();
    const all = text.split('\n').map((l) => (KEY_LINE.test(l) ? l.replace(/^#/, '') : l)).join('\n');
    const { config, warnings } = parseConfig(all, CONF);
    expect(warnings).toEqual([]);
    expect(config.user).toBe('root');
    expect(config.userId).toBe(0);
  });

  it('documents every key once, and only keys the agent accepts', () => {
    expect([...documented].sort()).toEqual([...new Set(documented)].sort());
    expect([...documented].sort()).toEqual([...configKeys()].sort());
  });

  it('every key is read outside the config module', () => {
    const code = sources(path.join(ROOT, 'src'))
      .filter((f) => !f.endsWith(path.join('config', 'config.ts')))
      .map((f) => fs.readFileSync(f, 'utf8')).join('\n');
    const unread = configKeys().filter((k) => {
      const fields = DERIVED[k] ?? [configField(k)!];
      // config.field, cfg.field, this.o.config.field, or a Pick<AgentConfig, 'field'> destructure
      return !fields.every((f) => new RegExp(`\\.${f}\\b|\\{[^}]*\\b${f}\\b[^}]*\\}\\s*=\\s*(?:this\\.o\\.)?config\\b`).test(code));
    });
    expect(unread).toEqual([]);
  });
});
