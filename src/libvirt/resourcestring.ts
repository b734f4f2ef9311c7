/**
 * sanlock's resource string, as taken by `sanlock client acquire -r` / `command -r` and printed
 * by `sanlock client status`: LOCKSPACE:RESOURCE:PATH:OFFSET[:SH] (one disk per resource, which
 * is all libvirt ever uses).
 *
 * Escaping: sanlock_str_to_res (sanlock src/client.c) takes the character after any '\' literally
 * in every field, so we escape '\', ':' and ' ' wherever they occur, and the string always parses
 * back to the same fields. sanlock_path_export (used for its own output) escapes only ':' and ' '
 * and only in paths, passing an existing '\' through as if it already were an escape; for paths
 * and names without a backslash, and names without ':' or ' ', both give the same text.
 */

export interface SanlockResourceFields {
  lockspace: string;
  resource: string;
  path: string;
  offset: number;
  mode: 'exclusive' | 'shared';
}

function escapeField(s: string): string {
  return s.replace(/[\\: ]/g, (c) => `\\${c}`);
}

export function formatSanlockResource(r: SanlockResourceFields): string {
  if (!Number.isSafeInteger(r.offset) || r.offset < 0) throw new RangeError(`bad lease offset ${r.offset}`);
  const base = `${escapeField(r.lockspace)}:${escapeField(r.resource)}:${escapeField(r.path)}:${r.offset}`;
  return r.mode === 'shared' ? `${base}:SH` : base;
}

/**
 * The inverse, for one-disk strings: `LS:RES:PATH:OFF`, with an optional `:SH` or `:<lver>` suffix
 * (a lease version is accepted and dropped). Throws RangeError on anything else.
 */
export function parseSanlockResource(s: string): SanlockResourceFields {
  const fields: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') {
      if (i === s.length - 1) throw new RangeError(`resource string ends with a lone '\\': ${s}`);
      cur += s[++i];
    } else if (c === ':') {
      fields.push(cur);
      cur = '';
    } else cur += c;
  }
  fields.push(cur);
  if (fields.length !== 4 && fields.length !== 5) {
    throw new RangeError(`resource string needs LOCKSPACE:RESOURCE:PATH:OFFSET[:SH]: ${s}`);
  }
  const [lockspace, resource, path, off, suffix] = fields;
  if (!/^[0-9]+$/.test(off) || !Number.isSafeInteger(Number(off))) throw new RangeError(`bad offset '${off}' in ${s}`);
  if (suffix !== undefined && suffix !== 'SH' && !/^[0-9]+$/.test(suffix)) {
    throw new RangeError(`bad suffix '${suffix}' in ${s} (expected SH or a lease version)`);
  }
  if (lockspace === '' || resource === '' || path === '') throw new RangeError(`empty field in ${s}`);
  return { lockspace, resource, path, offset: Number(off), mode: suffix === 'SH' ? 'shared' : 'exclusive' };
}
