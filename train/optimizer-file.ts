// Reading a checkpoint's optimizer.safetensors back: AdamW moments {param}.exp_avg / {param}.exp_avg_sq and the
// per-parameter step counts in the metadata, each checked, so a damaged file is one line and never NaN training.
import { SafetensorsFile } from '../model/safetensors.ts';
import { FtError } from '../util/errors.ts';
import type { AdamWState } from './optimizer.ts';

function stepCounts(file: string, text: string | undefined): Record<string, number> {
  let steps: unknown;
  try {
    steps = JSON.parse(text ?? '{}');
  } catch {
    steps = null;
  }
  if (
    typeof steps !== 'object' ||
    steps === null ||
    Array.isArray(steps) ||
    !Object.values(steps).every((n) => Number.isInteger(n) && (n as number) >= 0)
  ) {
    throw new FtError(
      `${file}: metadata 'steps' is not a JSON object of step counts (${JSON.stringify((text ?? '').slice(0, 40))})`,
    );
  }
  return steps as Record<string, number>;
}

/** The first value of a moment that AdamW could not have written: not finite, or a negative second moment. */
function checkMoment(file: string, name: string, data: Float32Array, second: boolean): void {
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    if (!Number.isFinite(x) || (second && x < 0))
      throw new FtError(
        `${file}: '${name}' holds ${x} at index ${i}; AdamW moments must be finite and the second ones >= 0`,
      );
  }
}

/** The AdamW state saved in `file`; throws FtError naming the file for anything unreadable or out of range. */
export async function readOptimizerState(file: string): Promise<AdamWState> {
  const st = await SafetensorsFile.open(file);
  try {
    const steps = stepCounts(file, st.metadata?.steps);
    const state: AdamWState = {};
    for (const [name, step] of Object.entries(steps)) {
      const m = (await st.read(`${name}.exp_avg`)).data;
      const v = (await st.read(`${name}.exp_avg_sq`)).data;
      checkMoment(file, `${name}.exp_avg`, m, false);
      checkMoment(file, `${name}.exp_avg_sq`, v, true);
      state[name] = { step, m, v };
    }
    return state;
  } finally {
    await st.close();
  }
}
