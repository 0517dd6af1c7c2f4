// What N cores give N independent one-thread jobs here, the most any N-thread speedup can reach: a 512³ matMul loop
// timed alone, then as N copies at once in separate processes, for ft's kernel (engine/wasm-matmul.ts on tfjs-wasm:
// OpenBLAS where installed, else ft's wasm GEMM)
// and, when the peer can run, for torch's (its BLAS). On a VM whose cores share one physical core's vector units, or slow
// down together, the copies' sum falls short of N times one. The same for memory: decoding's one-row products read
// each weight once per token, so a float weight larger than the caches streams from memory at whatever rate the
// cores get together; the stream copy times [1, 2048] x [32000, 2048]^T (262 MB, TinyLlama's lm_head).
// Run: npx tsx bench/parallel-ceiling.ts [copies]   (bench/train.ts runs it with every core)
// A copy itself is `npx tsx bench/parallel-ceiling.ts --copy [matmul|stream]`.
import { fileURLToPath } from 'node:url';
import { blas } from '../engine/blas.ts';
import { run } from './child.ts';
import { PYTHON, peerEnv, peerMissing } from './peer-env.ts';

const N = 512;
const SECONDS = 2;
/** The stream copy's weight [STREAM_ROWS, STREAM_COLS]. */
const [STREAM_ROWS, STREAM_COLS] = [32000, 2048];

type CopyKind = 'matmul' | 'stream';

/** Rounds of (one alone, then all together); the VM's speed drifts, so each ratio compares runs seconds apart. */
const ROUNDS = 3;

/** Aggregate rate of the copies at once over one alone, per round (1 = no gain from the extra cores). */
export interface Ceiling {
  /** per round: one copy alone, GFLOP/s (GB/s for the stream copy) */
  alone: number[];
  /** per round: the sum over the copies at once, GFLOP/s (GB/s) */
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
print('@result {"rate": %f}' % (2 * ${N} ** 3 * n / (time.time() - t) / 1e9))
`;

async function copies(count: number, cmd: string, args: string[]): Promise<number[]> {
  const runs = await Promise.all(Array.from({ length: count }, () => run(cmd, args)));
  return runs.map(({ code, lines }) => {
    const line = lines.find((l) => l.startsWith('@result '));
    if (code !== 0 || !line)
      throw new Error(`parallel ceiling: ${cmd} ${args.join(' ').slice(0, 80)} failed (exit ${code})`);
    return (JSON.parse(line.slice('@result '.length)) as { rate: number }).rate;
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

export interface Ceilings {
  /** ft's 512³ matMul */
  ft: Ceiling;
  /** ft's one-row product against a 262 MB float weight, in GB/s of weight read */
  stream: Ceiling;
  /** torch's 512³ matmul, when the peer can run */
  torch: Ceiling | null;
}

/** The ceilings of `count` cores: ft's kernel, memory, and torch's kernel when the peer can run (null otherwise). */
export async function parallelCeilings(count: number): Promise<Ceilings> {
  const self = fileURLToPath(import.meta.url);
  const ft = await ceiling(count, process.execPath, ['--import', 'tsx', self, '--copy', 'matmul']);
  const stream = await ceiling(count, process.execPath, ['--import', 'tsx', self, '--copy', 'stream']);
  const torch = (await peerMissing()) ? null : await ceiling(count, 'env', [...peerEnv(1), PYTHON, '-c', TORCH_COPY]);
  return { ft, stream, torch };
}

/** One copy: tfjs-wasm on one thread, its product in a loop for SECONDS, the rate as `@result`. */
async function copy(kind: CopyKind): Promise<void> {
  const tf = await import('@tensorflow/tfjs');
  const { initBackend } = await import('../engine/backend.ts');
  await initBackend('wasm', 1);
  const [a, b] =
    kind === 'matmul'
      ? [tf.randomNormal([N, N]), tf.randomNormal([N, N])]
      : [tf.randomNormal([1, STREAM_COLS]), tf.randomNormal([STREAM_ROWS, STREAM_COLS])];
  const product = () => tf.matMul(a, b, false, kind === 'stream').dispose();
  const unit = kind === 'matmul' ? 2 * N ** 3 : 4 * STREAM_ROWS * STREAM_COLS; // FLOP, or bytes of weight
  product();
  const start = performance.now();
  let n = 0;
  while (performance.now() - start < SECONDS * 1000) {
    product();
    n++;
  }
  console.log(`@result ${JSON.stringify({ rate: (unit * n) / ((performance.now() - start) / 1000) / 1e9 })}`);
}

/** What ft's products of 6 rows and more run on in this process: the machine's OpenBLAS, or ft's wasm GEMM. */
export const ftProducts = (): string => blas()?.name ?? "ft's wasm GEMM";

export const describeCeiling = (name: string, count: number, c: Ceiling, unit = 'GFLOP/s') =>
  `${name}: ${count} copies at once / 1 alone = ${c.ratio.toFixed(2)}x (median of ${ROUNDS} rounds: ` +
  c.alone.map((a, i) => `${c.together[i].toFixed(1)}/${a.toFixed(1)} ${unit}`).join(', ') +
  ')';

/** The stream ceiling's line. */
export const describeStream = (count: number, c: Ceiling) =>
  describeCeiling(
    `memory (ft's [1, ${STREAM_COLS}] x [${STREAM_ROWS}, ${STREAM_COLS}]^T, 1 thread each)`,
    count,
    c,
    'GB/s',
  );

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const at = process.argv.indexOf('--copy');
  if (at >= 0) await copy((process.argv[at + 1] ?? 'matmul') as CopyKind);
  else {
    const count = Number(process.argv[2] ?? 2);
    const { ft, stream, torch } = await parallelCeilings(count);
    console.log(describeCeiling(`ft's kernel (${ftProducts()}, ${N}³ matMul)`, count, ft));
    console.log(describeStream(count, stream));
    if (torch) console.log(describeCeiling(`torch's kernel (${N}³ matmul)`, count, torch));
  }
}
