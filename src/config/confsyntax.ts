/**
 * The `key = value` syntax of libvirt's qemu-sanlock.conf (virconf): `#` comments, strings in
 * double or single quotes, integers, and lists `[ "a", "b" ]` that may span lines. Operators copy
 * lines between the two files, so we read the same syntax.
 */
export type ConfValue = string | number | ConfValue[];

export interface ConfEntry {
  key: string;
  value: ConfValue;
  line: number;
}

export class ConfSyntaxError extends Error {
  constructor(readonly file: string, readonly line: number, msg: string) {
    super(`${file}:${line}: ${msg}`);
    this.name = 'ConfSyntaxError';
  }
}

export function parseConfText(text: string, file = 'config'): ConfEntry[] {
  const entries: ConfEntry[] = [];
  let i = 0;
  let line = 1;
  const n = text.length;
  const err = (msg: string): never => { throw new ConfSyntaxError(file, line, msg); };

  const skipBlank = (newlines: boolean) => {
    while (i < n) {
      const c = text[i];
      if (c === '#') { while (i < n && text[i] !== '\n') i++; continue; }
      if (c === '\n') { if (!newlines) return; line++; i++; continue; }
      if (c === ' ' || c === '\t' || c === '\r') { i++; continue; }
      return;
    }
  };

  const parseValue = (): ConfValue => {
    skipBlank(false);
    const c = text[i];
    if (c === '"' || c === "'") {
      const q = c; i++;
      let s = '';
      while (i < n && text[i] !== q) {
        if (text[i] === '\n') err('unterminated string (a quoted value must end on the same line)');
        s += text[i++];
      }
      if (i >= n) err('unterminated string');
      i++;
      return s;
    }
    if (c === '[') {
      i++;
      const list: ConfValue[] = [];
      for (;;) {
        skipBlank(true);
        if (text[i] === ']') { i++; return list; }
        if (i >= n) err('unterminated list: missing "]"');
        list.push(parseValue());
        skipBlank(true);
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return list; }
        err(`expected "," or "]" in list, found "${text[i] ?? 'end of file'}"`);
      }
    }
    const m = /^[+-]?\d+/.exec(text.slice(i, i + 32));
    if (m) { i += m[0].length; return Number(m[0]); }
    return err(`expected a value (a "quoted string", a number or a [list]) but found "${text.slice(i).split('\n')[0]}"`);
  };

  for (;;) {
    skipBlank(true);
    if (i >= n) break;
    const m = /^[A-Za-z_][A-Za-z0-9_.]*/.exec(text.slice(i, i + 256));
    if (!m) err(`expected "key = value", found "${text.slice(i).split('\n')[0]}"`);
    const key = m![0];
    const keyLine = line;
    i += key.length;
    skipBlank(false);
    if (text[i] !== '=') err(`expected "=" after "${key}"`);
    i++;
    const value = parseValue();
    skipBlank(false);
    if (i < n && text[i] !== '\n' && text[i] !== ';') err(`unexpected text after the value of "${key}": "${text.slice(i).split('\n')[0]}"`);
    if (text[i] === ';') i++;
    entries.push({ key, value, line: keyLine });
  }
  return entries;
}
