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

/** Longest quoted value accepted: paths and names are far shorter; this bounds what one value costs. */
export const MAX_VALUE_BYTES = 64 * 1024;

export function parseConfText(text: string, file = 'config'): ConfEntry[] {
  const entries: ConfEntry[] = [];
  let i = 0;
  let line = 1;
  const n = text.length;
  const err = (msg: string): never => { throw new ConfSyntaxError(file, line, msg); };
  /** The rest of the current line, for messages (shortened: a line may be very long). */
  const rest = () => {
    const l = text.slice(i, i + 81).split('\n')[0];
    return l.length > 80 ? `${l.slice(0, 77)}...` : l;
  };

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
      const start = i;
      while (i < n && text[i] !== q) {
        if (text[i] === '\n') err('unterminated string (a quoted value must end on the same line)');
        if (i - start >= MAX_VALUE_BYTES) err(`quoted value longer than ${MAX_VALUE_BYTES / 1024} KiB`);
        i++;
      }
      if (i >= n) err('unterminated string');
      const s = text.slice(start, i);
      if (Buffer.byteLength(s) > MAX_VALUE_BYTES) err(`quoted value longer than ${MAX_VALUE_BYTES / 1024} KiB`);
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
    return err(`expected a value (a "quoted string", a number or a [list]) but found "${rest()}"`);
  };

  for (;;) {
    skipBlank(true);
    if (i >= n) break;
    const m = /^[A-Za-z_][A-Za-z0-9_.]*/.exec(text.slice(i, i + 256));
    if (!m) err(`expected "key = value", found "${rest()}"`);
    const key = m![0];
    const keyLine = line;
    i += key.length;
    skipBlank(false);
    if (text[i] !== '=') err(`expected "=" after "${key}"`);
    i++;
    const value = parseValue();
    skipBlank(false);
    if (i < n && text[i] !== '\n' && text[i] !== ';') err(`unexpected text after the value of "${key}": "${rest()}"`);
    if (text[i] === ';') i++;
    entries.push({ key, value, line: keyLine });
  }
  return entries;
}
