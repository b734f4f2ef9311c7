/**
 * A reader of sanlock's one-disk resource strings, for tests that check what
 * formatSanlockResource (src/config/sanlockargs.ts) prints: it follows sanlock_str_to_res
 * (sanlock src/client.c), which takes the character after any '\' literally in every field.
 */
import { SanlockResourceFields } from '../../src/config/sanlockargs';

/**
 * The inverse of formatSanlockResource, for one-disk strings: `LS:RES:PATH:OFF`, with an optional `:SH` or `:<lver>` suffix
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
