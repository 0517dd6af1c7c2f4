import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('a TypeScript metric outside an ESM package', () => {
  it('loads under the loader the ft bin registers (tsx/esm/api register), types, imports and all', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ft-metric-')); // no package.json: .ts files there are CommonJS to Node
    writeFileSync(
      path.join(dir, 'helper.ts'),
      'export const same = (a: string, b: string): number => (a === b ? 1 : 0);\n',
    );
    writeFileSync(
      path.join(dir, 'exact.ts'),
      "import { same } from './helper.ts';\ninterface Scores { exact: number }\nexport default function exact(p: string, r: string): Scores {\n  return { exact: same(p.trim(), r.trim()) };\n}\n",
    );
    const userMetric = pathToFileURL(path.resolve(import.meta.dirname, 'user-metric.ts')).href;
    const script = [
      "import { register } from 'tsx/esm/api';",
      'register();',
      `const { loadUserMetric } = await import(${JSON.stringify(userMetric)});`,
      `const m = await loadUserMetric(${JSON.stringify(path.join(dir, 'exact.ts'))});`,
      "console.log(JSON.stringify([m.score(' Red.', 'Red.', { prompt: '', task: null, where: 'row 0' }), m.score('Blue.', 'Red.', { prompt: '', task: null, where: 'row 1' })]));",
    ].join('\n');
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: path.resolve(import.meta.dirname, '..'),
      encoding: 'utf8',
    });
    rmSync(dir, { recursive: true, force: true });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual([{ exact: 1 }, { exact: 0 }]);
  });
});
