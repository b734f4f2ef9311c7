/**
 * XML input safety for domain XML: a single linear pass that refuses what fast-xml-parser would
 * otherwise accept or choke on, before the parser sees the text.
 *
 * fast-xml-parser (5.x) is lenient: its validator accepts several documents libxml2 (and so
 * libvirt) refuses — undefined entities such as `&foo;`, a `<` inside an attribute value,
 * control characters, more than one root element — and its parser does not decode numeric
 * character references unless DOCTYPE entity processing is on. Rather than turn on DOCTYPE
 * handling, we refuse every DOCTYPE (libvirt never writes one; it is the carrier of
 * billion-laughs and external-entity attacks), check the document here, and decode the five
 * predefined entities and numeric references ourselves (decodeXmlText).
 *
 * Everything here is O(n) in the input and uses no recursion, so hostile input cannot make it
 * hang or overflow the stack.
 */

export class XmlSyntaxError extends Error {
  constructor(message: string, readonly offset?: number) {
    super(message);
    this.name = 'XmlSyntaxError';
  }
}

/** 1-based line and column of a UTF-16 offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(offset, text.length);
  for (let i = text.indexOf('\n'); i !== -1 && i < end; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: end - lineStart + 1 };
}

/** Characters XML 1.0 forbids anywhere (§2.2), including unpaired surrogates. */
const BAD_CHAR =
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** One entity or character reference, anchored at lastIndex. */
const REF_AT = /&(?:lt|gt|amp|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);/y;

/** A piece of input for an error message: one line, at most `max` characters. */
export function shortText(s: string, max = 64): string {
  const cut = s.length > max ? `${s.slice(0, max)}…` : s;
  // eslint-disable-next-line no-control-regex -- control characters are what gets escaped
  return cut.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function isXmlChar(cp: number): boolean {
  return cp === 0x9 || cp === 0xa || cp === 0xd ||
    (cp >= 0x20 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

function describeChar(c: string): string {
  const cp = c.codePointAt(0) ?? 0;
  return `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** Check that `&` at `at` starts a valid reference; return the index after it. */
function checkRef(xml: string, at: number): number {
  REF_AT.lastIndex = at;
  const m = REF_AT.exec(xml);
  if (!m) {
    const shown = shortText(xml.slice(at, Math.min(at + 12, xml.length)).split(/[\s<"']/)[0]);
    throw new XmlSyntaxError(`undefined entity or stray '&' ('${shown}'); only &lt; &gt; &amp; &quot; &apos; and numeric references are allowed`, at);
  }
  const ref = m[0];
  if (ref[1] === '#') {
    const cp = ref[2] === 'x' ? parseInt(ref.slice(3, -1), 16) : parseInt(ref.slice(2, -1), 10);
    if (!isXmlChar(cp)) throw new XmlSyntaxError(`character reference ${ref} is not a legal XML character`, at);
  }
  return at + ref.length;
}

function isSpace(c: string): boolean {
  return c === ' ' || c === '\n' || c === '\t' || c === '\r';
}

/**
 * Well-formedness checks fast-xml-parser's validator does not make (or reports unclearly), plus
 * limits on nesting and on the number of elements and attributes. Attribute syntax and name
 * characters are left to XMLValidator, which runs afterwards.
 * `xml` must already have its line ends normalised to "\n".
 */
export function checkXmlStructure(xml: string, maxDepth: number, maxNodes = Infinity): void {
  const bad = xml.search(BAD_CHAR);
  if (bad !== -1) {
    throw new XmlSyntaxError(`character ${describeChar(xml[bad])} is not allowed in XML`, bad);
  }
  const n = xml.length;
  const open: { name: string; at: number }[] = [];
  let rootSeen = false;
  let nodes = 0; // elements + attributes: bounds the parser's work on wide documents
  const tooMany = (at: number) => new XmlSyntaxError(`more than ${maxNodes} elements and attributes`, at);
  let i = 0;
  while (i < n) {
    const c = xml[i];
    if (c !== '<') {
      if (c === '&') {
        if (open.length === 0) throw new XmlSyntaxError('text outside the root element', i);
        i = checkRef(xml, i);
        continue;
      }
      if (open.length === 0 && !isSpace(c)) throw new XmlSyntaxError('text outside the root element', i);
      i++;
      continue;
    }
    if (xml.startsWith('<!--', i)) {
      const end = xml.indexOf('-->', i + 4);
      if (end === -1) throw new XmlSyntaxError('comment is not closed', i);
      i = end + 3;
    } else if (xml.startsWith('<![CDATA[', i)) {
      if (open.length === 0) throw new XmlSyntaxError('CDATA section outside the root element', i);
      const end = xml.indexOf(']]>', i + 9);
      if (end === -1) throw new XmlSyntaxError('CDATA section is not closed', i);
      i = end + 3;
    } else if (xml.startsWith('<!', i)) {
      if (/^<!doctype/i.test(xml.slice(i, i + 9))) {
        throw new XmlSyntaxError('DOCTYPE declarations are not allowed (entity definitions are refused)', i);
      }
      throw new XmlSyntaxError(`markup declaration '${xml.slice(i, i + 10).split(/\s/)[0]}' is not allowed`, i);
    } else if (xml[i + 1] === '?') {
      const end = xml.indexOf('?>', i + 2);
      if (end === -1) throw new XmlSyntaxError('processing instruction is not closed', i);
      i = end + 2;
    } else if (xml[i + 1] === '/') {
      const end = xml.indexOf('>', i + 2);
      if (end === -1) throw new XmlSyntaxError('end tag is not closed', i);
      const name = shortText(xml.slice(i + 2, Math.min(end, i + 2 + 256)).trimEnd());
      const top = open.pop();
      if (!top) throw new XmlSyntaxError(`end tag </${name}> has no start tag`, i);
      if (top.name !== name) {
        const { line } = lineColumn(xml, top.at);
        throw new XmlSyntaxError(`end tag </${name}> does not match <${top.name}> (opened at line ${line})`, i);
      }
      i = end + 1;
    } else {
      // start tag: skip quoted attribute values in one step each
      if (open.length === 0) {
        if (rootSeen) throw new XmlSyntaxError('more than one root element', i);
        rootSeen = true;
      }
      const start = i;
      if (++nodes > maxNodes) throw tooMany(start);
      let j = i + 1;
      let closed = false;
      while (j < n) {
        const d = xml[j];
        if (d === '"' || d === "'") {
          const q = xml.indexOf(d, j + 1);
          if (q === -1) throw new XmlSyntaxError('attribute value is not closed', j);
          // search only inside the value: a document-wide indexOf here would be quadratic
          const value = xml.slice(j + 1, q);
          const lt = value.indexOf('<');
          if (lt !== -1) throw new XmlSyntaxError("'<' is not allowed in an attribute value", j + 1 + lt);
          for (let a = value.indexOf('&'); a !== -1; a = value.indexOf('&', a + 1)) checkRef(xml, j + 1 + a);
          if (++nodes > maxNodes) throw tooMany(j);
          j = q + 1;
          continue;
        }
        if (d === '<') throw new XmlSyntaxError('tag is not closed', start);
        if (d === '>') {
          closed = true;
          break;
        }
        j++;
      }
      if (!closed) throw new XmlSyntaxError('tag is not closed', start);
      if (xml[j - 1] !== '/') {
        const m = /^[^\s/>]*/.exec(xml.slice(start + 1, Math.min(j, start + 1 + 256)));
        open.push({ name: shortText(m ? m[0] : ''), at: start });
        if (open.length > maxDepth) throw new XmlSyntaxError(`elements are nested more than ${maxDepth} deep`, start);
      }
      i = j + 1;
    }
  }
  if (!rootSeen) throw new XmlSyntaxError('no root element', 0);
  if (open.length > 0) {
    const path = open.slice(-4).map((o) => o.name).join(' > ');
    throw new XmlSyntaxError(`input ends inside <${open[open.length - 1].name}> (unclosed: ${open.length > 4 ? '… > ' : ''}${path})`);
  }
}

const REF_ALL = /&(?:(lt|gt|amp|quot|apos)|#([0-9]+)|#x([0-9a-fA-F]+));/g;
const NAMED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/**
 * Decode the predefined entities and numeric character references, as libxml2 does.
 * Attribute values also get XML's attribute-value normalisation (§3.3.3, CDATA type): each
 * literal tab or newline becomes a space; a *referenced* one (`&#9;`, `&#10;`) is kept.
 * Line ends must already be normalised to "\n".
 */
export function decodeXmlText(raw: string, attribute: boolean): string {
  const s = attribute ? raw.replace(/[\t\n]/g, ' ') : raw;
  if (!s.includes('&')) return s;
  return s.replace(REF_ALL, (_m, name: string | undefined, dec: string | undefined, hex: string | undefined) => {
    if (name !== undefined) return NAMED[name];
    const cp = dec !== undefined ? parseInt(dec, 10) : parseInt(hex ?? '', 16);
    if (!isXmlChar(cp)) throw new XmlSyntaxError(`character reference ${_m} is not a legal XML character`);
    return String.fromCodePoint(cp);
  });
}
