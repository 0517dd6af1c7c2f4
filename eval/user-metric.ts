// An optional user metric: a JS/TS module whose default export scores one prediction against its reference.
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { tsImport } from 'tsx/esm/api';
import { FtError } from '../util/errors.ts';

/** What a metric sees of an eval example besides the two texts. */
export interface MetricContext {
  prompt: string;
  task: string | null;
  where: string;
}

/** `(prediction, reference, record) => number | { name: number, ... }`; a bare number is named after the file. */
export type UserMetricFn = (
  prediction: string,
  reference: string,
  record: MetricContext,
) => number | Record<string, number>;

export interface UserMetric {
  file: string;
  score(prediction: string, reference: string, record: MetricContext): Record<string, number>;
}

/**
 * Imports `file` and checks that its default export is a function. tsImport runs TypeScript whatever the folder's
 * package.json says: outside an ESM package a .ts file is CommonJS to Node, which the ESM-only loader the ft bin
 * registers cannot require (the "require cycle" error); tsx then hands back module.exports, whose .default is the export.
 */
export async function loadUserMetric(file: string): Promise<UserMetric> {
  const full = path.resolve(file);
  let mod: { default?: unknown };
  try {
    mod = await tsImport(pathToFileURL(full).href, import.meta.url);
  } catch (e) {
    throw new FtError(`--metric ${file}: cannot import (${(e as Error).message.split('\n')[0]})`);
  }
  const exported = mod.default;
  const fn =
    typeof exported === 'object' && exported !== null && 'default' in exported
      ? (exported as { default: unknown }).default
      : exported;
  if (typeof fn !== 'function')
    throw new FtError(
      `--metric ${file}: expected a default export (prediction, reference, record) => number | Record<string, number>, got ${typeof fn}`,
    );
  const name = path.basename(full).replace(/\.[cm]?[jt]s$/, '');
  return {
    file,
    score(prediction, reference, record) {
      let v: ReturnType<UserMetricFn>;
      try {
        v = (fn as UserMetricFn)(prediction, reference, record);
      } catch (e) {
        throw new FtError(
          `--metric ${file}: failed on ${record.where} (${(e as Error)?.message?.split('\n')[0] ?? String(e)})`,
        );
      }
      const named = typeof v === 'number' ? { [name]: v } : v;
      if (named === null || typeof named !== 'object')
        throw new FtError(
          `--metric ${file}: returned ${JSON.stringify(v)} for ${record.where}; expected a number or an object of numbers`,
        );
      for (const [k, x] of Object.entries(named)) {
        if (typeof x !== 'number' || !Number.isFinite(x))
          throw new FtError(
            `--metric ${file}: '${k}' is ${JSON.stringify(x)} for ${record.where}; expected a finite number`,
          );
      }
      return named;
    },
  };
}
