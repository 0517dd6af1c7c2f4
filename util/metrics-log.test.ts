import { appendFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FtError } from '../util/errors.ts';
import { MetricsLog, readMetrics } from './metrics-log.ts';

const tmp = () => path.join(mkdtempSync(path.join(os.tmpdir(), 'ft-metrics-')), 'metrics.jsonl');

describe('metrics.jsonl', () => {
  it('appends one JSON line per record and reads them back', async () => {
    const file = tmp();
    const log = await MetricsLog.open(file);
    log.append({ step: 5, epoch: 0.25, loss: 3.5, lr: 1e-3, grad_norm: 1.2, tokens_per_s: 900 });
    log.append({ step: 10, epoch: 0.5, eval_loss: 3.1 });
    expect(readFileSync(file, 'utf8').split('\n')).toEqual([
      '{"step":5,"epoch":0.25,"loss":3.5,"lr":0.001,"grad_norm":1.2,"tokens_per_s":900}',
      '{"step":10,"epoch":0.5,"eval_loss":3.1}',
      '',
    ]);
    expect(readMetrics(file)).toEqual([
      { step: 5, epoch: 0.25, loss: 3.5, lr: 0.001, grad_norm: 1.2, tokens_per_s: 900 },
      { step: 10, epoch: 0.5, eval_loss: 3.1 },
    ]);
  });

  it('a fresh run starts empty; a resumed run keeps the lines up to its checkpoint step', async () => {
    const file = tmp();
    const log = await MetricsLog.open(file);
    for (const step of [5, 10, 15, 20]) log.append({ step, epoch: step / 20, loss: 1 });
    (await MetricsLog.open(file, 10)).append({ step: 15, epoch: 0.75, loss: 0.5 });
    expect(readMetrics(file).map((r) => [r.step, r.loss])).toEqual([
      [5, 1],
      [10, 1],
      [15, 0.5],
    ]);
    await MetricsLog.open(file);
    expect(readMetrics(file)).toEqual([]);
  });

  it('skips a torn final line but rejects a bad line in the middle', () => {
    const file = tmp();
    writeFileSync(file, '{"step":1,"epoch":0.1,"loss":2}\n');
    appendFileSync(file, '{"step":2,"ep');
    expect(readMetrics(file)).toHaveLength(1);
    writeFileSync(file, '{"step":1,"epoch":0.1}\nnot json\n{"step":3,"epoch":0.3}\n');
    expect(() => readMetrics(file)).toThrow(`${file}:2: invalid JSON in metrics log`);
    writeFileSync(file, '{"loss":1}\n');
    expect(() => readMetrics(file)).toThrow(`${file}:1: expected a metrics record with numeric step and epoch`);
  });

  it('records a NaN loss as null', async () => {
    const file = tmp();
    (await MetricsLog.open(file)).append({ step: 1, epoch: 0, loss: NaN });
    expect(readMetrics(file)[0].loss).toBeNull();
  });
});

describe('metrics.jsonl on a full disk', () => {
  it('says so in one line naming the whole path (a real ENOSPC: the log is a link to /dev/full)', async () => {
    const file = tmp();
    const log = await MetricsLog.open(file);
    rmSync(file);
    symlinkSync('/dev/full', file);
    expect(() => log.append({ step: 1, epoch: 0.1, loss: 2 })).toThrow(
      new FtError(`${file}: cannot write: no space left on the device (ENOSPC)`),
    );
  });
});
