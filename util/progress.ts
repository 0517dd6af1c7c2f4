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

function makeBar(format: string, total: number, extra: string[]): Progress {
  if (quietAll || !process.stderr.isTTY) {
    return { update() {}, setTotal() {}, stop() {} };
  }
  const fields = extra.map((f) => ` | ${f} {${f}}`).join('');
  const bar = new cliProgress.SingleBar(
    {
      format: format + fields,
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 20,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  const start = performance.now();
  const init: Record<string, string | number> = { rate: '0' };
  for (const f of extra) init[f] = '-';
  bar.start(total, 0, init);
  return {
    update(value, more) {
      const secs = (performance.now() - start) / 1000;
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
