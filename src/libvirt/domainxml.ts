import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { checkXmlStructure, decodeXmlText, lineColumn, shortText as q, XmlSyntaxError } from './xmlguard';
import { Refusal, SANLK } from '../ondisk/results';

/**
 * The parts of a libvirt domain XML that locking needs, read the way libvirt's
 * src/conf/domain_conf.c reads them (defaults, "first element wins", empty source = no medium).
 * docs/lease-plan.md lists each rule and where it comes from.
 */

export type DiskType = 'file' | 'block' | 'dir' | 'network' | 'volume' | 'nvme' | 'vhostuser' | 'vhostvdpa';
export type DiskDevice = 'disk' | 'cdrom' | 'floppy' | 'lun';
export type OnLockFailure = 'poweroff' | 'restart' | 'pause' | 'ignore';

export interface NetworkHost {
  name?: string;
  port?: string;
  transport?: string;
  socket?: string;
}

/** The disk's top image. `<backingStore>` and `<mirror>` are not read: libvirt locks only the top. */
export type DiskSource =
  | { type: 'file' | 'block' | 'dir'; path: string }
  | { type: 'volume'; pool: string; volume: string; mode?: 'host' | 'direct' }
  | { type: 'network'; protocol: string; name?: string; hosts: NetworkHost[] }
  /** never locked; `endpoint` is the vhost-user socket path or the vhost-vdpa device, if given */
  | { type: 'nvme' | 'vhostuser' | 'vhostvdpa'; endpoint?: string };

export interface DiskInfo {
  /** 1-based position among the domain's `<disk>` elements (for messages) */
  index: number;
  type: DiskType;
  device: DiskDevice;
  /** `<target dev=...>`, required by libvirt */
  target: string;
  bus?: string;
  /** undefined: no medium (no `<source>`, or an empty path, as libvirt treats `file=''`) */
  source?: DiskSource;
  /** `<readonly/>`; also true for every cdrom, which libvirt forces read-only */
  readonly: boolean;
  /** `<shareable/>` */
  shareable: boolean;
  /** `<transient/>` */
  transient: boolean;
  /** `<alias name=...>` of live XML: what device events name */
  alias?: string;
}

export interface LeaseInfo {
  /** 1-based position among the domain's `<lease>` elements */
  index: number;
  /** `<lockspace>`; optional in libvirt's schema */
  lockspace?: string;
  /** `<key>`: the sanlock resource name */
  key: string;
  /** `<target path=...>` */
  path: string;
  /** `<target offset=...>`, default 0 */
  offset: number;
}

export interface DomainInfo {
  name: string;
  /** canonical lower-case 8-4-4-4-12 form, whatever separators the XML used */
  uuid: string;
  /** `<domain id=...>`: present only for a running domain */
  id?: number;
  /** `<domain type=...>`, e.g. kvm */
  type?: string;
  disks: DiskInfo[];
  leases: LeaseInfo[];
  /** `<on_lockfailure>`; undefined when absent, empty or "default" */
  onLockFailure?: OnLockFailure;
}

export interface ParseOptions {
  /** refuse larger input; default 4 MiB (UTF-8 bytes) */
  maxBytes?: number;
  /** refuse deeper element nesting; default 512 (a long `<backingStore>` chain nests one level per image) */
  maxDepth?: number;
  /** refuse more elements plus attributes; default 200000 (a large real domain has a few thousand) */
  maxNodes?: number;
}

export const DEFAULT_MAX_XML_BYTES = 4 * 1024 * 1024;
export const DEFAULT_MAX_XML_DEPTH = 512;
export const DEFAULT_MAX_XML_NODES = 200_000;

export class DomainXmlError extends Refusal {
  constructor(message: string, readonly line?: number, readonly column?: number) {
    super(SANLK.EINVAL, `domain XML: ${message}`);
    this.name = 'DomainXmlError';
  }
}

// ---------------------------------------------------------------------------------------------
// The preserveOrder tree of fast-xml-parser: each element is { [tag]: children, ':@'?: attrs },
// text is { '#text': string }, CDATA is { '#cdata': [{ '#text': string }] }.

type XNode = Record<string, unknown>;
const ATTRS = ':@';
const TEXT = '#text';
const CDATA = '#cdata';

function tagOf(node: XNode): string | undefined {
  for (const k of Object.keys(node)) if (k !== ATTRS) return k;
  return undefined;
}

function childrenOf(node: XNode): XNode[] {
  const tag = tagOf(node);
  const c = tag === undefined ? undefined : node[tag];
  return Array.isArray(c) ? (c as XNode[]) : [];
}

function elements(node: XNode, name: string): XNode[] {
  return childrenOf(node).filter((c) => tagOf(c) === name);
}

function first(node: XNode, name: string): XNode | undefined {
  return childrenOf(node).find((c) => tagOf(c) === name);
}

/** An attribute value, decoded; undefined if absent. */
function attr(node: XNode, name: string): string | undefined {
  const a = node[ATTRS];
  if (a === null || typeof a !== 'object' || !Object.prototype.hasOwnProperty.call(a, name)) return undefined;
  const v = (a as Record<string, unknown>)[name];
  return typeof v === 'string' ? decodeXmlText(v, true) : undefined;
}

/** libxml2's xmlNodeGetContent: all descendant text and CDATA, concatenated, untrimmed. */
function textContent(node: XNode): string {
  let out = '';
  const stack: XNode[] = childrenOf(node).slice().reverse();
  while (stack.length > 0) {
    const c = stack.pop() as XNode;
    const tag = tagOf(c);
    if (tag === TEXT) out += decodeXmlText(String(c[TEXT]), false);
    else if (tag === CDATA) {
      for (const t of childrenOf(c)) if (tagOf(t) === TEXT) out += String(t[TEXT]);
    } else {
      const kids = childrenOf(c);
      for (let k = kids.length - 1; k >= 0; k--) stack.push(kids[k]);
    }
  }
  return out;
}

/** libvirt's virXPathString: the text of the first such child; "" counts as absent. */
function childText(node: XNode, name: string): string | undefined {
  const el = first(node, name);
  if (!el) return undefined;
  const t = textContent(el);
  return t === '' ? undefined : t;
}

// ---------------------------------------------------------------------------------------------

const DISK_TYPES: readonly DiskType[] = ['file', 'block', 'dir', 'network', 'volume', 'nvme', 'vhostuser', 'vhostvdpa'];
const DISK_DEVICES: readonly DiskDevice[] = ['disk', 'cdrom', 'floppy', 'lun'];
const LOCK_FAILURE: readonly OnLockFailure[] = ['poweroff', 'restart', 'pause', 'ignore'];
const PATH_ATTR: Record<'file' | 'block' | 'dir', string> = { file: 'file', block: 'dev', dir: 'dir' };

const parser = (maxDepth: number) =>
  new XMLParser({
    preserveOrder: true,
    ignoreAttributes: false,
    attributeNamePrefix: '',
    allowBooleanAttributes: false,
    parseTagValue: false,
    parseAttributeValue: false,
    trimValues: false,
    // entities are decoded by decodeXmlText; DOCTYPE is refused before we get here
    processEntities: false,
    htmlEntities: false,
    ignoreDeclaration: true,
    ignorePiTags: true,
    cdataPropName: CDATA,
    commentPropName: false,
    maxNestedTags: maxDepth + 1,
  });

/** libvirt's virUUIDParse: 32 hex digits, '-' or ' ' allowed between pairs, surrounding space. */
function parseUuid(text: string): string | undefined {
  const t = text.trim();
  let hex = '';
  let i = 0;
  while (i < t.length && hex.length < 32) {
    if (t[i] === '-' || t[i] === ' ') {
      i++;
      continue;
    }
    const pair = t.slice(i, i + 2);
    if (!/^[0-9a-fA-F]{2}$/.test(pair)) return undefined;
    hex += pair;
    i += 2;
  }
  if (hex.length !== 32 || i !== t.length) return undefined;
  hex = hex.toLowerCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** libvirt's virStrToLong_ull(base 10, whole string): leading space and '+' allowed. */
function parseOffset(s: string): number | undefined {
  if (!/^\s*\+?[0-9]+$/.test(s)) return undefined;
  const v = Number(s.trim().replace(/^\+/, ''));
  return Number.isSafeInteger(v) ? v : undefined;
}

function diskLabel(index: number, target?: string): string {
  return target ? `<disk> #${index} (target ${q(target)})` : `<disk> #${index}`;
}

function parseDisk(el: XNode, index: number): DiskInfo {
  const targetEl = first(el, 'target');
  const target = targetEl ? attr(targetEl, 'dev') : undefined;
  const label = diskLabel(index, target);

  const typeAttr = attr(el, 'type');
  const type = (typeAttr ?? 'file') as DiskType; // libvirt's default
  if (!DISK_TYPES.includes(type)) throw new DomainXmlError(`${label} has unknown type='${q(String(typeAttr))}'`);
  const deviceAttr = attr(el, 'device');
  const device = (deviceAttr ?? 'disk') as DiskDevice;
  if (!DISK_DEVICES.includes(device)) throw new DomainXmlError(`${label} has unknown device='${q(String(deviceAttr))}'`);
  if (!target) throw new DomainXmlError(`${label} has no <target dev=...>`);

  const src = first(el, 'source'); // libvirt reads only the first <source>
  let source: DiskSource | undefined;
  if (src) {
    switch (type) {
      case 'file':
      case 'block':
      case 'dir': {
        const path = attr(src, PATH_ATTR[type]);
        // libvirt: "People sometimes pass a bogus '' source path when they mean to omit the
        // source element completely" — an empty path is no medium.
        if (path) source = { type, path };
        break;
      }
      case 'volume': {
        const pool = attr(src, 'pool');
        const volume = attr(src, 'volume');
        const mode = attr(src, 'mode');
        if (pool === undefined && volume === undefined) break;
        if (pool === undefined || volume === undefined) {
          throw new DomainXmlError(`${label} has type='volume' but <source> gives only one of pool= and volume=`);
        }
        if (mode !== undefined && mode !== 'host' && mode !== 'direct') {
          throw new DomainXmlError(`${label} has unknown volume mode='${q(mode)}'`);
        }
        source = { type, pool, volume, ...(mode ? { mode } : {}) };
        break;
      }
      case 'network': {
        const protocol = attr(src, 'protocol');
        if (!protocol) throw new DomainXmlError(`${label} has type='network' but no <source protocol=...>`);
        const name = attr(src, 'name');
        if (!name && protocol !== 'nbd') {
          throw new DomainXmlError(`${label} has type='network' protocol='${q(protocol)}' but no <source name=...>`);
        }
        const hosts = elements(src, 'host').map((h) => {
          const host: NetworkHost = {};
          for (const k of ['name', 'port', 'transport', 'socket'] as const) {
            const v = attr(h, k);
            if (v !== undefined) host[k] = v;
          }
          return host;
        });
        source = { type, protocol, ...(name ? { name } : {}), hosts };
        break;
      }
      case 'nvme':
        source = { type };
        break;
      case 'vhostuser':
      case 'vhostvdpa': {
        const endpoint = attr(src, type === 'vhostuser' ? 'path' : 'dev');
        source = { type, ...(endpoint ? { endpoint } : {}) };
        break;
      }
    }
  }
  // libvirt (virDomainDiskDefParseXML): only cdrom, floppy and lun may have no medium.
  if (!source && device === 'disk' && type !== 'nvme' && type !== 'vhostuser' && type !== 'vhostvdpa') {
    const want = type === 'volume' ? '<source pool=... volume=...>'
      : type === 'network' ? '<source protocol=... name=...>'
      : `<source ${PATH_ATTR[type as 'file' | 'block' | 'dir']}=...>`;
    throw new DomainXmlError(`${label} has type='${type}' but no ${want}`);
  }

  const has = (name: string) => first(el, name) !== undefined;
  const bus = targetEl ? attr(targetEl, 'bus') : undefined;
  const aliasEl = first(el, 'alias');
  const alias = aliasEl ? attr(aliasEl, 'name') : undefined;
  return {
    index,
    type,
    device,
    target,
    ...(bus ? { bus } : {}),
    ...(source ? { source } : {}),
    // libvirt's post-parse forces every cdrom read-only
    readonly: has('readonly') || device === 'cdrom',
    shareable: has('shareable'),
    transient: has('transient'),
    ...(alias ? { alias } : {}),
  };
}

function parseLease(el: XNode, index: number): LeaseInfo {
  const label = `<lease> #${index}`;
  const keyLabel = (key: string) => `${label} (key '${q(key)}')`;
  // libvirt (virDomainLeaseDefParseXML): the first <key>, <lockspace> and <target> win; key and
  // lockspace are the element content, untrimmed.
  const keyEl = first(el, 'key');
  if (!keyEl) throw new DomainXmlError(`${label} has no <key>`);
  const key = textContent(keyEl);
  const lsEl = first(el, 'lockspace');
  const lockspace = lsEl ? textContent(lsEl) : undefined;
  const targetEl = first(el, 'target');
  const path = targetEl ? attr(targetEl, 'path') : undefined;
  if (!path) throw new DomainXmlError(`${keyLabel(key)} has no <target path=...>`);
  const offAttr = targetEl ? attr(targetEl, 'offset') : undefined;
  let offset = 0;
  if (offAttr !== undefined) {
    const v = parseOffset(offAttr);
    if (v === undefined) {
      throw new DomainXmlError(`${keyLabel(key)} has malformed offset='${q(offAttr)}' (expected a non-negative decimal byte offset)`);
    }
    offset = v;
  }
  return { index, ...(lockspace !== undefined ? { lockspace } : {}), key, path, offset };
}

function fail(e: unknown, xml: string): never {
  if (e instanceof DomainXmlError) throw e;
  if (e instanceof XmlSyntaxError) {
    if (e.offset === undefined) throw new DomainXmlError(e.message);
    const { line, column } = lineColumn(xml, e.offset);
    throw new DomainXmlError(`${e.message} at line ${line}, column ${column}`, line, column);
  }
  const msg = e instanceof Error ? e.message : String(e);
  throw new DomainXmlError(`could not be parsed: ${msg.split('\n')[0]}`);
}

function toText(input: string | Uint8Array, maxBytes: number): string {
  if (typeof input === 'string') {
    if (input.length > maxBytes || Buffer.byteLength(input, 'utf8') > maxBytes) {
      throw new DomainXmlError(`input is larger than ${maxBytes} bytes`);
    }
    return input;
  }
  if (input.byteLength > maxBytes) throw new DomainXmlError(`input is larger than ${maxBytes} bytes`);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(input);
  } catch {
    throw new DomainXmlError('input is not valid UTF-8');
  }
}

/**
 * Parse a libvirt domain XML (as written by virsh dumpxml, or given to a hook on stdin).
 * Throws DomainXmlError, with a one-line message, for anything malformed, hostile or not a domain.
 */
export function parseDomainXml(input: string | Uint8Array, options: ParseOptions = {}): DomainInfo {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_XML_BYTES;
  const maxDepth = options.maxDepth ?? DEFAULT_MAX_XML_DEPTH;
  let xml = toText(input, maxBytes);
  if (xml.charCodeAt(0) === 0xfeff) xml = xml.slice(1);
  // XML §2.11: line ends are normalised before anything else
  xml = xml.replace(/\r\n?/g, '\n');
  if (xml.trim() === '') throw new DomainXmlError('input is empty');

  let tree: XNode[];
  try {
    checkXmlStructure(xml, maxDepth, options.maxNodes ?? DEFAULT_MAX_XML_NODES);
    const v = XMLValidator.validate(xml, { allowBooleanAttributes: false });
    if (v !== true) {
      throw new DomainXmlError(`not well-formed: ${v.err.msg.replace(/\.$/, '')} at line ${v.err.line}, column ${v.err.col}`, v.err.line, v.err.col);
    }
    tree = parser(maxDepth).parse(xml) as XNode[];
  } catch (e) {
    fail(e, xml);
  }

  try {
    const roots = tree.filter((n) => {
      const t = tagOf(n);
      return t !== undefined && t !== TEXT && t !== CDATA;
    });
    const root = roots[0];
    const rootTag = root ? tagOf(root) : undefined;
    if (!root || rootTag !== 'domain') {
      throw new DomainXmlError(`root element is <${q(rootTag ?? '?')}>, expected <domain>`);
    }

    const name = childText(root, 'name');
    if (name === undefined) throw new DomainXmlError('<domain> has no <name>');
    const uuidText = childText(root, 'uuid');
    if (uuidText === undefined) throw new DomainXmlError(`<domain> '${q(name)}' has no <uuid>`);
    const uuid = parseUuid(uuidText);
    if (!uuid) throw new DomainXmlError(`<domain> '${q(name)}' has malformed <uuid> '${q(uuidText)}'`);

    const idAttr = attr(root, 'id');
    let id: number | undefined;
    if (idAttr !== undefined) {
      if (!/^\s*-?[0-9]+\s*$/.test(idAttr) || !Number.isSafeInteger(Number(idAttr))) {
        throw new DomainXmlError(`<domain> '${q(name)}' has malformed id='${q(idAttr)}'`);
      }
      const v = Number(idAttr);
      if (v >= 0) id = v; // libvirt uses -1 for "not running"
    }
    const type = attr(root, 'type');

    const lf = childText(root, 'on_lockfailure');
    let onLockFailure: OnLockFailure | undefined;
    if (lf !== undefined && lf !== 'default') {
      if (!LOCK_FAILURE.includes(lf as OnLockFailure)) {
        throw new DomainXmlError(`<on_lockfailure> has unknown action '${q(lf)}' (expected poweroff, restart, pause or ignore)`);
      }
      onLockFailure = lf as OnLockFailure;
    }

    // libvirt's XPath ./devices/disk and ./devices/lease: every <devices> element counts
    const devices = elements(root, 'devices');
    const disks = devices.flatMap((d) => elements(d, 'disk')).map((el, i) => parseDisk(el, i + 1));
    const leases = devices.flatMap((d) => elements(d, 'lease')).map((el, i) => parseLease(el, i + 1));

    return {
      name,
      uuid,
      ...(id !== undefined ? { id } : {}),
      ...(type !== undefined ? { type } : {}),
      disks,
      leases,
      ...(onLockFailure ? { onLockFailure } : {}),
    };
  } catch (e) {
    fail(e, xml);
  }
}
