// Loss curve as a standalone SVG (train loss, its smoothed trend, eval loss), drawn by hand:
// a line plot is a few paths and ticks, no chart library needed.
import { writeFileAtomic } from './fs.ts';
import type { MetricsRecord } from './metrics-log.ts';

export interface PlotOptions {
  title?: string;
  width?: number;
  height?: number;
  /** EMA weight for the smoothed train curve, as TensorBoard's smoothing slider (0 = off). */
  smoothing?: number;
}

type Point = [number, number];

const COLORS = { train: '#9ecae1', smooth: '#1f77b4', eval: '#d62728', grid: '#e5e5e5', axis: '#333', text: '#222' };

/** Tick values at a step of 1, 2 or 5 x 10^k covering [lo, hi], the step giving closest to `count` intervals. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const candidates = [1, 2, 5, 10].map((k) => k * mag);
  const intervals = (s: number) => Math.abs((hi - lo) / s - count);
  const step = candidates.reduce((best, s) => (intervals(s) < intervals(best) ? s : best));
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step)
    ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

/** Exponential moving average with TensorBoard's debiasing, so the curve starts at the first value. */
export function smooth(points: Point[], weight: number): Point[] {
  let last = 0;
  let norm = 0;
  return points.map(([x, y]) => {
    last = last * weight + (1 - weight) * y;
    norm = norm * weight + (1 - weight);
    return [x, last / norm];
  });
}

function finitePoints(records: MetricsRecord[], key: 'loss' | 'eval_loss'): Point[] {
  return records.flatMap((r) =>
    typeof r[key] === 'number' && Number.isFinite(r[key]) ? [[r.step, r[key] as number] as Point] : [],
  );
}

const fmt = (v: number) => (Math.abs(v) >= 1000 || Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(3))));
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The loss curve of a run's metrics as an SVG document. */
export function lossCurveSvg(records: MetricsRecord[], opts: PlotOptions = {}): string {
  const W = opts.width ?? 720;
  const H = opts.height ?? 420;
  const m = { left: 64, right: 24, top: 44, bottom: 52 };
  const train = finitePoints(records, 'loss');
  const evals = finitePoints(records, 'eval_loss');
  const weight = opts.smoothing ?? 0.6;
  const smoothed = weight > 0 && train.length >= 10 ? smooth(train, weight) : [];
  const all = [...train, ...evals];
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold" fill="${COLORS.text}">${esc(opts.title ?? 'Loss')}</text>`,
  ];
  if (all.length === 0) {
    out.push(
      `<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#888">no loss values logged yet</text>`,
      '</svg>',
    );
    return out.join('\n') + '\n';
  }

  // data ranges: x from 0 (or the first step) to the last step; y padded by 5%
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const xTicks = niceTicks(Math.min(0, ...xs), Math.max(...xs, 1), 6);
  const [x0, x1] = [Math.min(xTicks[0], ...xs), Math.max(xTicks[xTicks.length - 1], ...xs)];
  let [yLo, yHi] = [Math.min(...ys), Math.max(...ys)];
  const pad = (yHi - yLo) * 0.05 || Math.abs(yHi) * 0.1 || 1;
  [yLo, yHi] = [yLo - pad, yHi + pad];
  const yTicks = niceTicks(yLo, yHi, 5);
  const [y0, y1] = [Math.min(yTicks[0], yLo), Math.max(yTicks[yTicks.length - 1], yHi)];

  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const sx = (x: number) => m.left + ((x - x0) / (x1 - x0 || 1)) * pw;
  const sy = (y: number) => m.top + ph - ((y - y0) / (y1 - y0 || 1)) * ph;
  const path = (pts: Point[]) =>
    pts.map(([x, y], i) => `${i ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');

  // grid and ticks
  for (const t of yTicks) {
    const y = sy(t).toFixed(1);
    out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${y}" y2="${y}" stroke="${COLORS.grid}"/>`);
    out.push(
      `<text x="${m.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle" fill="${COLORS.text}">${fmt(t)}</text>`,
    );
  }
  for (const t of xTicks) {
    const x = sx(t).toFixed(1);
    out.push(`<line x1="${x}" x2="${x}" y1="${m.top}" y2="${m.top + ph}" stroke="${COLORS.grid}"/>`);
    out.push(`<text x="${x}" y="${m.top + ph + 18}" text-anchor="middle" fill="${COLORS.text}">${fmt(t)}</text>`);
  }
  // axes and labels
  out.push(`<path d="M${m.left},${m.top}V${m.top + ph}H${m.left + pw}" fill="none" stroke="${COLORS.axis}"/>`);
  out.push(
    `<text x="${m.left + pw / 2}" y="${H - 12}" text-anchor="middle" fill="${COLORS.text}">optimizer step</text>`,
  );
  out.push(
    `<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle" fill="${COLORS.text}">loss</text>`,
  );

  // series
  const legend: [string, string, boolean][] = [];
  if (train.length > 0) {
    const color = smoothed.length ? COLORS.train : COLORS.smooth;
    out.push(`<path d="${path(train)}" fill="none" stroke="${color}" stroke-width="1.5" stroke-linejoin="round"/>`);
    legend.push(['train loss', color, false]);
  }
  if (smoothed.length) {
    out.push(
      `<path d="${path(smoothed)}" fill="none" stroke="${COLORS.smooth}" stroke-width="2.2" stroke-linejoin="round"/>`,
    );
    legend.push([`train loss (smoothed ${weight})`, COLORS.smooth, false]);
  }
  if (evals.length > 0) {
    out.push(`<path d="${path(evals)}" fill="none" stroke="${COLORS.eval}" stroke-width="2" stroke-linejoin="round"/>`);
    for (const [x, y] of evals)
      out.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3.5" fill="${COLORS.eval}"/>`);
    legend.push(['eval loss', COLORS.eval, true]);
  }

  // legend, top right inside the plot
  const lw = 12 + Math.max(...legend.map(([label]) => label.length)) * 6.8 + 34;
  const lx = m.left + pw - lw - 8;
  const ly = m.top + 8;
  out.push(
    `<rect x="${lx}" y="${ly}" width="${lw.toFixed(0)}" height="${legend.length * 20 + 10}" fill="#fff" fill-opacity="0.9" stroke="#ccc" rx="4"/>`,
  );
  legend.forEach(([label, color, dot], i) => {
    const y = ly + 15 + i * 20;
    out.push(`<line x1="${lx + 10}" x2="${lx + 34}" y1="${y}" y2="${y}" stroke="${color}" stroke-width="2.5"/>`);
    if (dot) out.push(`<circle cx="${lx + 22}" cy="${y}" r="3.5" fill="${color}"/>`);
    out.push(`<text x="${lx + 42}" y="${y}" dominant-baseline="middle" fill="${COLORS.text}">${esc(label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Writes the loss curve SVG (atomically). */
export async function writeLossCurve(file: string, records: MetricsRecord[], opts?: PlotOptions): Promise<void> {
  await writeFileAtomic(file, lossCurveSvg(records, opts));
}
