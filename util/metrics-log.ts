// metrics.jsonl: one JSON object per logging or eval step, appended as training runs (HF Trainer's log_history, as lines).
// Appended line by line rather than written atomically: a crash loses at most the last line, and readers skip a torn one.
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from './fs.ts';
import { FtError, ioError } from './errors.ts';

/** One line of metrics.jsonl. Absent fields were not measured at that step; null means the value was not finite (NaN). */
export interface MetricsRecord {
  step: number; // optimizer steps done
  epoch: number; // fractional epochs done
  loss?: number | null; // mean training loss since the previous log line
  lr?: number;
  grad_norm?: number | null; // pre-clip global norm
  tokens_per_s?: number; // trained (non-padding) tokens per second since the previous log line
  eval_loss?: number | null;
  elapsed_s?: number; // wall-clock seconds since the run started
}

export class MetricsLog {
  private constructor(readonly file: string) {}

  /**
   * Opens `file` for a run. A fresh run starts it empty; a run resumed at `resumeStep` keeps the lines
   * with step <= resumeStep (the ones the checkpoint saw) and drops the rest.
   */
  static async open(file: string, resumeStep?: number): Promise<MetricsLog> {
    const kept =
      resumeStep === undefined || !existsSync(file) ? [] : readMetrics(file).filter((r) => r.step <= resumeStep);
    await writeFileAtomic(file, kept.map((r) => JSON.stringify(r) + '\n').join(''));
    return new MetricsLog(file);
  }

  append(record: MetricsRecord): void {
    try {
      appendFileSync(this.file, JSON.stringify(record) + '\n');
    } catch (e) {
      throw ioError(e, this.file);
    }
  }
}

/** Reads metrics.jsonl; a torn last line (crash mid-write) is skipped, a bad line elsewhere is an error. */
export function readMetrics(file: string): MetricsRecord[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  const out: MetricsRecord[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch {
      if (i === lines.length - 1) return; // torn final line: no trailing newline was written
      throw new FtError(`${file}:${i + 1}: invalid JSON in metrics log`);
    }
    const r = rec as MetricsRecord;
    if (typeof r !== 'object' || r === null || typeof r.step !== 'number' || typeof r.epoch !== 'number') {
      throw new FtError(`${file}:${i + 1}: expected a metrics record with numeric step and epoch`);
    }
    out.push(r);
  });
  return out;
}
