import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { assertOutsideInputs } from './owned-dir.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-owned-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('assertOutsideInputs: an output never is, sits in, or holds a folder being read', () => {
  const runs = path.join(tmp, 'runs');
  const adapter = path.join(runs, 'x', 'adapter');
  mkdirSync(adapter, { recursive: true });
  const base = path.join(tmp, 'base');
  mkdirSync(base);
  const inputs = [
    { flag: '--model', path: base },
    { flag: '--adapter', path: adapter },
  ];
  const check = (out: string) => () => assertOutsideInputs({ flag: '--out', path: out }, inputs);

  it('refuses --out equal to --model', () =>
    expect(check(base)).toThrow(`--out ${base}: is the --model folder ${base} being read; write somewhere else`));
  it('refuses --out inside --model', () =>
    expect(check(path.join(base, 'merged'))).toThrow(
      `--out ${path.join(base, 'merged')}: is inside the --model folder ${base} being read`,
    ));
  it('refuses --out holding the adapter (--out runs)', () =>
    expect(check(runs)).toThrow(
      `--out ${runs}: holds the --adapter folder ${adapter} being read, and would replace it; write somewhere else`,
    ));
  it('sees through a symlink and a trailing slash', () => {
    const link = path.join(tmp, 'link-to-base');
    symlinkSync(base, link);
    expect(check(link + '/')).toThrow(/is the --model folder/);
    expect(check(path.join(tmp, 'runs', 'x', '..'))).toThrow(/holds the --adapter folder/);
  });
  it('accepts a sibling whose name shares a prefix', () => expect(check(base + '-merged')).not.toThrow());
});
