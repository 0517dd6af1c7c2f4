import cliProgress from 'cli-progress';

export interface Progress {
  /** Advance to `value` (absolute), with optional extra fields shown in the bar. */
  update(value: number, fields?: Record<string, string | number>): void;
  /** Raise the total (e.g. when it becomes known). */
  setTotal(total: number): void;
  stop(): void;
}

let quietAll = false;

/** `--quiet` silences every bar in the process. */
export function setQuiet(quiet: boolean): void {
  quietAll = quiet;
}

/**
 * A progress bar on stderr with rate and ETA; a no-op when stderr is not a TTY or output is quiet.
 * `extra` names fields (set through update) appended to the line, e.g. ['loss', 'lr'].
 */
export function progress(label: string, total: number, unit = 'it', extra: string[] = []): Progress {
  return makeBar(`${label} [{bar}] {value}/{total} ${unit} | {rate} ${unit}/s | ETA {eta_formatted}`, total, extra);
}

/** A count with its rate, for streaming work whose total is not known in advance (no ETA then). */
export function counter(label: string, unit = 'it'): Progress {
  return makeBar(`${label} {value} ${unit} | {rate} ${unit}/s`, 0, []);
}

/** Bars shown together (e.g. one per file being downloaded and a total), with the same quiet rules. */
export interface ProgressGroup {
  /** A bar as progress() draws it; stop it when its work is done (it stays on screen). */
  bar(label: string, total: number, unit?: string): Progress;
  stop(): void;
}

const QUIET: Progress = { update() {}, setTotal() {}, stop() {} };

export function progressGroup(): ProgressGroup {
  if (quietAll || !process.stderr.isTTY) return { bar: () => QUIET, stop() {} };
  const multi = new cliProgress.MultiBar(
    { stream: process.stderr, hideCursor: true, etaBuffer: 20, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  return {
    bar: (label, total, unit = 'it') =>
      wrap(
        (fmt, init) => multi.create(total, 0, init, { format: fmt }),
        `${label} [{bar}] {value}/{total} ${unit} | {rate} ${unit}/s | ETA {eta_formatted}`,
        [],
      ),
    stop: () => multi.stop(),
  };
}

function makeBar(format: string, total: number, extra: string[]): Progress {
  if (quietAll || !process.stderr.isTTY) return QUIET;
  return wrap(
    (fmt, init) => {
      const single = new cliProgress.SingleBar(
        { format: fmt, stream: process.stderr, hideCursor: true, etaBuffer: 20, clearOnComplete: false },
        cliProgress.Presets.shades_classic,
      );
      single.start(total, 0, init);
      return single;
    },
    format,
    extra,
  );
}

/** A started bar behind the Progress interface, with the rate field computed from the start time. */
function wrap(
  start: (format: string, init: Record<string, string | number>) => cliProgress.SingleBar,
  format: string,
  extra: string[],
): Progress {
  const fields = extra.map((f) => ` | ${f} {${f}}`).join('');
  const began = performance.now();
  const init: Record<string, string | number> = { rate: '0' };
  for (const f of extra) init[f] = '-';
  const bar = start(format + fields, init);
  return {
    update(value, more) {
      const secs = (performance.now() - began) / 1000;
      bar.update(value, { ...more, rate: secs > 0 ? (value / secs).toFixed(1) : '0' });
    },
    setTotal(t) {
      bar.setTotal(t);
    },
    stop() {
      bar.stop();
    },
  };
}
