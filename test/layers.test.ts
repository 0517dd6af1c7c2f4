// The import rule of docs/ARCHITECTURE.md, read off the source: folders import only folders below them, and no
// file imports itself through a cycle. Tests, bench/ and test/ helpers are outside the rule.
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

/** Each folder's layer; a folder imports only folders of a lower layer. */
const LAYER: Record<string, number> = {
  util: 0,
  engine: 1,
  hub: 1,
  model: 2,
  data: 3,
  adapters: 3,
  quant: 3,
  train: 4,
  eval: 4,
  export: 4,
  recipes: 5,
  cli: 6,
};
const ROOT = path.resolve(import.meta.dirname, '..');

function sources(): string[] {
  return Object.keys(LAYER).flatMap((dir) =>
    readdirSync(path.join(ROOT, dir))
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
      .map((f) => `${dir}/${f}`),
  );
}

/** Relative imports of a file (static `import`/`export ... from` and dynamic `import('...')`), as root-relative paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  const specs = [
    ...text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'(\.[^']+)'|import\('(\.[^']+)'\)/g),
  ].map((m) => m[1] ?? m[2]);
  return specs.map((s) => path.relative(ROOT, path.resolve(path.dirname(path.join(ROOT, file)), s)));
}

const graph = new Map(sources().map((f) => [f, importsOf(f).filter((i) => i.endsWith('.ts'))]));

describe('layers', () => {
  it('every import goes to a lower layer or within the same folder', () => {
    const upward: string[] = [];
    for (const [file, deps] of graph) {
      const from = file.split('/')[0];
      for (const dep of deps) {
        const to = dep.split('/')[0];
        if (to !== from && to in LAYER && LAYER[to] >= LAYER[from]) upward.push(`${file} -> ${dep}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('no file reaches itself through its imports', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (f: string, trail: string[]) => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'open') {
        cycles.push([...trail.slice(trail.indexOf(f)), f].join(' -> '));
        return;
      }
      state.set(f, 'open');
      for (const d of graph.get(f) ?? []) visit(d, [...trail, f]);
      state.set(f, 'done');
    };
    for (const f of graph.keys()) visit(f, []);
    expect(cycles).toEqual([]);
  });

  it('reads the imports it checks', () => {
    // the checker itself: recipes/train.ts imports train/loop.ts, which must be seen
    expect(graph.get('recipes/train.ts')).toContain('train/loop.ts');
    expect(graph.size).toBeGreaterThan(80);
  });
});
