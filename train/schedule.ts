// Learning-rate schedules as in Hugging Face transformers (optimization.py): a multiplier of the peak LR
// as a function of the optimizer step (0-based, the step about to be taken), with linear warmup.

export const LR_SCHEDULERS = ['cosine', 'linear', 'constant', 'constant_with_warmup'] as const;
export type LrSchedulerName = (typeof LR_SCHEDULERS)[number];

export interface ScheduleSpec {
  name: LrSchedulerName;
  warmupSteps: number;
  totalSteps: number;
  /** cosine only: transformers' num_cycles (default 0.5 = a single decay from 1 to 0). */
  numCycles?: number;
}

/** step / warmup while warming up (transformers uses max(1, warmup) so warmup 0 never divides by zero). */
function warmup(step: number, warmupSteps: number): number {
  return step / Math.max(1, warmupSteps);
}

/** LR multiplier at `step`: get_{cosine,linear,constant,constant}_schedule[_with_warmup]'s lr_lambda. */
export function lrMultiplier(spec: ScheduleSpec, step: number): number {
  const { name, warmupSteps, totalSteps } = spec;
  if (name === 'constant') return 1; // get_constant_schedule ignores warmup
  if (step < warmupSteps) return warmup(step, warmupSteps);
  const decaySteps = Math.max(1, totalSteps - warmupSteps);
  switch (name) {
    case 'constant_with_warmup':
      return 1;
    case 'linear':
      return Math.max(0, (totalSteps - step) / decaySteps);
    case 'cosine': {
      const progress = (step - warmupSteps) / decaySteps;
      const cycles = spec.numCycles ?? 0.5;
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)));
    }
  }
}

/** The learning rate used for optimizer step `step` (0-based). */
export function learningRate(peakLr: number, spec: ScheduleSpec, step: number): number {
  return peakLr * lrMultiplier(spec, step);
}

/** HF Trainer's get_warmup_steps: an explicit count wins, else ceil(ratio * total). */
export function warmupSteps(totalSteps: number, steps: number | undefined, ratio: number | undefined): number {
  if (steps !== undefined && steps > 0) return steps;
  return Math.ceil(totalSteps * (ratio ?? 0));
}

/**
 * Optimizer steps in a run, as HF Trainer counts them: max_steps when set, else
 * ceil(num_epochs * max(1, floor(microBatchesPerEpoch / gradAccum))).
 */
export function totalTrainingSteps(opts: {
  maxSteps?: number;
  numEpochs?: number;
  microBatchesPerEpoch: number;
  gradAccum: number;
}): number {
  if (opts.maxSteps !== undefined && opts.maxSteps > 0) return opts.maxSteps;
  const perEpoch = Math.max(1, Math.floor(opts.microBatchesPerEpoch / opts.gradAccum));
  return Math.ceil((opts.numEpochs ?? 1) * perEpoch);
}
