/**
 * The layers of docs/architecture.md, enforced: every relative import in src/ (static, type-only,
 * re-export or dynamic import()) stays within its own directory or goes to one that layers.json
 * allows, and no chain of imports leads back to where it started. ESLint checks the layer rule
 * per file too (eslint.config.mjs); this test also sees dynamic imports and cycles.
 */
import { readdirSync, readFileSync } from 'fs';
import { dirname, join, relative, resolve } from 'path';
import ts from 'typescript';

const ROOT = resolve(__dirname, '../..');
const SRC = join(ROOT, 'src');
const LAYERS: Record<string, string[]> = Object.fromEntries(
  Object.entries(JSON.parse(readFileSync(join(ROOT, 'layers.json'), 'utf8')) as Record<string, unknown>).filter(([k]) => k !== '//'),
) as Record<string, string[]>;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []);
}

/** The src files a file imports (relative specifiers only; packages and node: builtins are not layers). */
function importsOf(file: string, all: Set<string>): string[] {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  const out: string[] = [];
  for (const { fileName } of info.importedFiles) {
    if (!fileName.startsWith('.')) continue;
    const base = resolve(dirname(file), fileName);
    const hit = [base, `${base}.ts`, join(base, 'index.ts')].find((p) => all.has(p));
    out.push(hit ?? base);
  }
  return out;
}

const files = sources(SRC);
const graph = new Map<string, string[]>();
const all = new Set(files);
for (const f of files) graph.set(f, importsOf(f, all));
const rel = (f: string) => relative(SRC, f);
const layerOf = (f: string) => rel(f).split('/')[0];

describe('architecture (docs/architecture.md, layers.json)', () => {
  it('every directory of src is a layer with a rule', () => {
    const dirs = readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();
    expect(dirs).toEqual(Object.keys(LAYERS).sort());
    expect(files.filter((f) => dirname(f) === SRC).map(rel)).toEqual([]);
  });

  it('imports go only to the layers allowed below', () => {
    const bad: string[] = [];
    for (const [f, deps] of graph) {
      const from = layerOf(f);
      for (const d of deps) {
        if (!d.startsWith(SRC + '/')) {
          bad.push(`${rel(f)} imports ${relative(ROOT, d)}, outside src/`);
          continue;
        }
        const to = layerOf(d);
        if (to !== from && !(LAYERS[from] ?? []).includes(to)) bad.push(`${rel(f)} (${from}) imports ${rel(d)} (${to})`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('has no import cycles', () => {
    // Tarjan's strongly connected components: any component of more than one file is a cycle.
    let next = 0;
    const index = new Map<string, number>();
    const low = new Map<string, number>();
    const stack: string[] = [];
    const onStack = new Set<string>();
    const cycles: string[][] = [];
    const visit = (v: string): void => {
      index.set(v, next);
      low.set(v, next++);
      stack.push(v);
      onStack.add(v);
      for (const w of graph.get(v) ?? []) {
        if (!graph.has(w)) continue;
        if (!index.has(w)) {
          visit(w);
          low.set(v, Math.min(low.get(v)!, low.get(w)!));
        } else if (onStack.has(w)) {
          low.set(v, Math.min(low.get(v)!, index.get(w)!));
        }
      }
      if (low.get(v) === index.get(v)) {
        const c: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          c.push(rel(w));
        } while (w !== v);
        if (c.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(c.sort());
      }
    };
    for (const f of files) if (!index.has(f)) visit(f);
    expect(cycles).toEqual([]);
  });
});
