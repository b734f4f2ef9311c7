import * as fs from 'fs';
import * as path from 'path';

/**
 * Finds the package root by walking up from this file: it is src/io under
 * ts-jest and dist/io after tsc, so a fixed '../..' would be fragile.
 */
export function findPackageRoot(start: string = __dirname): string {
  let dir = start;
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        const name = (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name;
        if (name === 'lockagent') return dir;
      } catch {
        // unreadable package.json: keep walking
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new Error(`lockagent: cannot locate the package root (no lockagent package.json above ${start})`);
    }
    dir = parent;
  }
}
