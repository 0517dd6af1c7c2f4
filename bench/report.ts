// How a bench module hands its figures to `npm run bench` (bench/run.ts): printed as a table, and written as
// JSON to $FT_BENCH_OUT when run.ts set it.
import { writeFileAtomic } from '../util/fs.ts';

export type Figures = Record<string, number | string>;

export async function report(figures: Figures): Promise<void> {
  const width = Math.max(...Object.keys(figures).map((k) => k.length));
  for (const [k, v] of Object.entries(figures)) {
    console.log(`${k.padEnd(width)}  ${typeof v === 'number' ? Number(v.toPrecision(4)) : v}`);
  }
  const out = process.env.FT_BENCH_OUT;
  if (out) await writeFileAtomic(out, JSON.stringify(figures, null, 2) + '\n');
}
