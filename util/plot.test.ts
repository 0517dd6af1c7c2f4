import { describe, expect, it } from 'vitest';
import type { MetricsRecord } from './metrics-log.ts';
import { lossCurveSvg, niceTicks, smooth } from './plot.ts';

const records: MetricsRecord[] = [];
for (let step = 10; step <= 300; step += 10) {
  records.push({
    step,
    epoch: step / 100,
    loss: 1 + 5 / step ** 0.5,
    ...(step % 100 === 0 ? { eval_loss: 1.2 + 5 / step ** 0.5 } : {}),
  });
}

/** Every number in every path's d attribute and every circle, as [x, y] pairs. */
function coordinates(svg: string): number[][] {
  const pts: number[][] = [];
  for (const [, d] of svg.matchAll(/<path d="([^"]+)"/g))
    for (const [, x, y] of d.matchAll(/[ML](-?[\d.]+),(-?[\d.]+)/g)) pts.push([+x, +y]);
  for (const [, x, y] of svg.matchAll(/<circle cx="([\d.-]+)" cy="([\d.-]+)"/g)) pts.push([+x, +y]);
  return pts;
}

describe('loss curve SVG', () => {
  it('nice ticks step by 1, 2 or 5 times a power of ten', () => {
    expect(niceTicks(0, 300, 6)).toEqual([0, 50, 100, 150, 200, 250, 300]);
    expect(niceTicks(1.13, 2.87, 5)).toEqual([1.5, 2, 2.5]); // 0.5 gives 3.5 intervals, nearer 5 than 0.2's 8.7
    expect(niceTicks(1.13, 2.87, 10)).toEqual([1.2, 1.4, 1.6, 1.8, 2, 2.2, 2.4, 2.6, 2.8]);
    expect(niceTicks(0.0012, 0.0049, 3)).toEqual([0.002, 0.003, 0.004]);
  });

  it('smoothing is a debiased EMA that starts at the first value', () => {
    const s = smooth(
      [
        [1, 4],
        [2, 0],
      ],
      0.5,
    );
    expect(s[0]).toEqual([1, 4]);
    expect(s[1][1]).toBeCloseTo((0.5 * 0.5 * 4) / 0.75, 12); // (0.25*4 + 0.5*0) / (1 - 0.25)
  });

  it('draws train, smoothed train and eval series with axes, ticks, labels and a legend', () => {
    const svg = lossCurveSvg(records, { title: 'run <a>' });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('run &lt;a&gt;');
    for (const label of [
      'optimizer step',
      '>loss<',
      'train loss',
      'train loss (smoothed 0.6)',
      'eval loss',
      '>300<',
      '>150<',
    ])
      expect(svg).toContain(label);
    const series = [...svg.matchAll(/<path d="(M[^"]+)" fill="none" stroke="[^"]+" stroke-width/g)].map(
      (m) => m[1].split(/[ML]/).length - 1,
    );
    expect(series).toEqual([30, 30, 3]); // train, smoothed, eval
    expect(svg.match(/<circle/g)).toHaveLength(3 + 1); // eval points + legend marker
    for (const [x, y] of coordinates(svg)) {
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThanOrEqual(720);
      expect(y).toBeGreaterThanOrEqual(0);
      expect(y).toBeLessThanOrEqual(420);
    }
  });

  it('puts lower loss lower on the page', () => {
    const svg = lossCurveSvg([
      { step: 1, epoch: 0, loss: 3 },
      { step: 2, epoch: 0, loss: 1 },
    ]);
    const [[, yHigh], [, yLow]] = coordinates(svg).slice(1); // first path is the axis frame
    expect(yLow).toBeGreaterThan(yHigh);
  });

  it('skips non-finite losses and says so when nothing is left to draw', () => {
    expect(lossCurveSvg([{ step: 1, epoch: 0, loss: null }])).toContain('no loss values logged yet');
  });
});
