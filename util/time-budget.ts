// Synchronous work with a wall-clock bound. node:vm's timeout interrupts running JavaScript from a watchdog thread
// (a backtracking regex, a template loop), which nothing on the same thread can; one call costs ~80 µs, so callers
// bound coarse units of work (a chunk of records), not each small call.
import vm from 'node:vm';

/** The work ran past its budget and was stopped. */
export class TimeBudgetExceeded extends Error {
  override name = 'TimeBudgetExceeded';
}

const context = vm.createContext({ job: null as (() => unknown) | null });
const script = new vm.Script('job()');

/** fn(), stopped with TimeBudgetExceeded after `ms` milliseconds; fn's own errors pass through unchanged. */
export function withinTime<T>(ms: number, fn: () => T): T {
  context.job = fn;
  try {
    return script.runInContext(context, { timeout: Math.max(1, Math.ceil(ms)) }) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException)?.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT')
      throw new TimeBudgetExceeded(`stopped after ${ms} ms`);
    throw e;
  } finally {
    context.job = null;
  }
}
