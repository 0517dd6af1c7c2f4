// Folders ft writes carry a marker file of their own, `.ft-output`, saying what they hold. ft replaces a folder
// only when it wrote one of the same kind there, or the folder is empty or absent; and it never writes into,
// or over a folder holding, the folders it reads.
import { promises as fsp, realpathSync } from 'node:fs';
import * as path from 'node:path';
import { FtError } from './errors.ts';

export const OUTPUT_MARKER = '.ft-output';

/** What an ft-written folder holds: a model folder, a PEFT adapter, a training checkpoint, a training output_dir, prepared data, a dataset. */
export type OutputKind = 'model' | 'adapter' | 'checkpoint' | 'train-output' | 'prepared-data' | 'dataset';
const KINDS: readonly OutputKind[] = ['model', 'adapter', 'checkpoint', 'train-output', 'prepared-data', 'dataset'];

export async function writeOutputMarker(dir: string, kind: OutputKind): Promise<void> {
  await fsp.writeFile(path.join(dir, OUTPUT_MARKER), JSON.stringify({ tool: 'ft', kind }) + '\n');
}

/** The kind in `dir`'s marker, or null when `dir` has no (readable) ft marker. */
export async function outputKind(dir: string): Promise<OutputKind | null> {
  try {
    const m = JSON.parse(await fsp.readFile(path.join(dir, OUTPUT_MARKER), 'utf8')) as {
      tool?: unknown;
      kind?: unknown;
    };
    return m.tool === 'ft' && KINDS.includes(m.kind as OutputKind) ? (m.kind as OutputKind) : null;
  } catch {
    return null;
  }
}

/**
 * Throws unless ft may replace `target` with a folder of `kind`: absent, an empty folder, or a folder whose
 * marker says ft wrote a `kind` there. `hint` says how to go on (e.g. "pass --overwrite to replace it").
 */
export async function assertReplaceable(target: string, kind: OutputKind, hint: string): Promise<void> {
  const st = await fsp.stat(target).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw e;
  });
  if (!st) return;
  if (!st.isDirectory()) throw new FtError(`${target}: is a file, not a folder ft may replace; ${hint}`);
  if ((await fsp.readdir(target)).length === 0) return;
  const found = await outputKind(target);
  if (found === kind) return;
  const what = found
    ? `holds an ft ${found}, not an ft ${kind}`
    : `is not empty and was not written by ft (no ${OUTPUT_MARKER})`;
  throw new FtError(`${target}: ${what}; ${hint}`);
}

/** `p` resolved through symlinks as far as it exists (the rest appended), so two spellings of one folder compare equal. */
function realPath(p: string): string {
  const abs = path.resolve(p);
  try {
    return realpathSync(abs);
  } catch {
    const parent = path.dirname(abs);
    return parent === abs ? abs : path.join(realPath(parent), path.basename(abs));
  }
}

const within = (inner: string, outer: string) =>
  inner === outer || inner.startsWith(outer.endsWith(path.sep) ? outer : outer + path.sep);

/** Throws when the output folder `out` is, is inside, or holds one of the folders being read. */
export function assertOutsideInputs(
  out: { flag: string; path: string },
  inputs: { flag: string; path: string }[],
): void {
  const o = realPath(out.path);
  for (const input of inputs) {
    const i = realPath(input.path);
    if (within(o, i))
      throw new FtError(
        `${out.flag} ${out.path}: is ${o === i ? 'the' : 'inside the'} ${input.flag} folder ${input.path} being read; write somewhere else`,
      );
    if (within(i, o))
      throw new FtError(
        `${out.flag} ${out.path}: holds the ${input.flag} folder ${input.path} being read, and would replace it; write somewhere else`,
      );
  }
}
