// What N cores give N independent one-thread jobs here, the most any N-thread speedup can reach: a 512³ matMul loop
// timed alone, then as N copies at once in separate processes, for ft's kernel (engine/wasm-matmul.ts on tfjs-wasm)
// and, when the peer can run, for torch's (its BLAS). On a VM whose cores share one physical core's vector units, or slow
// down together, the copies' sum falls short of N times one.
// Run: npx tsx bench/parallel-ceiling.ts [copies]   (bench/train.ts runs it with every core)
// A copy itself is `npx tsx bench/parallel-ceiling.ts --copy`.
import { fileURLToPath } from 'node:url';
import { run } from './child.ts';
import { PYTHON, peerEnv, peerMissing } from './peer-env.ts';

const N = 512;
const SECONDS = 2;

/** Rounds of (one alone, then all together); the VM's speed drifts, so each ratio compares runs seconds apart. */
const ROUNDS = 3;

/** Aggregate GFLOP/s of the copies at once over one alone, per round (1 = no gain from the extra cores). */
export interface Ceiling {
  /** per round: one copy alone, GFLOP/s */
  alone: number[];
  /** per round: the sum over the copies at once, GFLOP/s */
  together: number[];
  /** median over the rounds of together / alone */
  ratio: number;
  ratios: number[];
}

const TORCH_COPY = `
import time, torch
torch.set_num_threads(1)
a, b = torch.randn(${N}, ${N}), torch.randn(${N}, ${N})
a @ b
t, n = time.time(), 0
while time.time() - t < ${SECONDS}:
    a @ b
    n += 1
print('@result {"gflops": %f}' % (2 * ${N} ** 3 * n / (time.time() - t) / 1e9))
`;

async function copies(count: number, cmd: string, args: string[]): Promise<number[]> {
  const runs = await Promise.all(Array.from({ length: count }, () => run(cmd, args)));
  return runs.map(({ code, lines }) => {
    const line = lines.find((l) => l.startsWith('@result '));
    if (code !== 0 || !line)
      throw new Error(`parallel ceiling: ${cmd} ${args.join(' ').slice(0, 80)} failed (exit ${code})`);
    return (JSON.parse(line.slice('@result '.length)) as { gflops: number }).gflops;
  });
}

async function ceiling(count: number, cmd: string, args: string[]): Promise<Ceiling> {
  const alone: number[] = [];
  const together: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    alone.push((await copies(1, cmd, args))[0]);
    together.push((await copies(count, cmd, args)).reduce((a, b) => a + b, 0));
  }
  const ratios = alone.map((a, i) => together[i] / a);
  return { alone, together, ratios, ratio: [...ratios].sort((a, b) => a - b)[Math.floor(ROUNDS / 2)] };
}

/** The ceiling of `count` cores for ft's kernel, and for torch's when the peer can run (null otherwise). */
export async function parallelCeilings(count: number): Promise<{ ft: Ceiling; torch: Ceiling | null }> {
  const self = fileURLToPath(import.meta.url);
  const ft = await ceiling(count, process.execPath, ['--import', 'tsx', self, '--copy']);
  const torch = (await peerMissing()) ? null : await ceiling(count, 'env', [...peerEnv(1), PYTHON, '-c', TORCH_COPY]);
  return { ft, torch };
}

/** One copy: tfjs-wasm on one thread, the loop for SECONDS, its GFLOP/s as `@result`. */
async function copy(): Promise<void> {
  const tf = await import('@tensorflow/tfjs');
  const { initBackend } = await import('../engine/backend.ts');
  await initBackend('wasm', 1);
  const [a, b] = [tf.randomNormal([N, N]), tf.randomNormal([N, N])];
  tf.matMul(a, b).dispose();
  const start = performance.now();
  let n = 0;
  while (performance.now() - start < SECONDS * 1000) {
    tf.matMul(a, b).dispose();
    n++;
  }
  console.log(`@result ${JSON.stringify({ gflops: (2 * N ** 3 * n) / ((performance.now() - start) / 1000) / 1e9 })}`);
}

export const describeCeiling = (name: string, count: number, c: Ceiling) =>
  `${name}: ${count} copies at once / 1 alone = ${c.ratio.toFixed(2)}x (median of ${ROUNDS} rounds: ` +
  c.alone.map((a, i) => `${c.together[i].toFixed(1)}/${a.toFixed(1)} GFLOP/s`).join(', ') +
  ')';

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--copy')) await copy();
  else {
    const count = Number(process.argv[2] ?? 2);
    const { ft, torch } = await parallelCeilings(count);
    console.log(describeCeiling(`ft's kernel (ft's wasm GEMM, ${N}³ matMul)`, count, ft));
    if (torch) console.log(describeCeiling(`torch's kernel (${N}³ matmul)`, count, torch));
  }
}
