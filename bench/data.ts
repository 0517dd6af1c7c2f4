// Data pipeline throughput and memory: generates Alpaca-style Arrow stream files, then streams each in a fresh process
// (so peak RSS is that pass's own): read only, and the full path to packed TrainBatches (tokenize, mask, split,
// shuffle, pack), each at 50k and 500k rows, so the two peak RSS figures show whether memory grows with the file.
// Tokenizing runs in-process (1 thread) and on worker threads (one per core), with a byte-level BPE (Llama 3 layout),
// a SentencePiece-style one (Llama 2 layout) and one the per-piece cache does not cover (the library's own speed).
// Run: npx tsx bench/data.ts   (FT_BENCH_DATA_ROWS=50000,500000 and FT_BENCH_DATA_TOKENIZE_ROWS=50000,500000 pick sizes)
import { availableParallelism } from 'node:os';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeArrowStream } from '../data/arrow.ts';
import { loadDataset, newStats } from '../data/pipeline.ts';
import { readFileRows } from '../data/source.ts';
import { DataRecipeSchema } from '../data/spec.ts';
import { seedRows, seedTokenizer } from '../data/testing.ts';
import { tokenizerJson, trainBpe } from '../model/bpe.ts';
import { tokenizerFromJson, type Tokenizer } from '../model/tokenizer.ts';
import type { Row } from '../data/types.ts';
import { Rng } from '../util/rng.ts';
import { report, type Figures } from './report.ts';

const [mode, file, arg, tokenizerArg, rowsArg] = process.argv.slice(2);
const peakRssMb = () => process.resourceUsage().maxRSS / 1024;

/** Rows of seed-task words in Alpaca shape: instruction 6-20 words, input empty 60% of the time, output 10-60 words. */
async function* generated(n: number): AsyncGenerator<Row[]> {
  const words = seedRows()
    .flatMap((r) => `${r.instruction} ${r.output}`.split(/\s+/))
    .filter(Boolean);
  const rng = new Rng(1);
  const text = (lo: number, hi: number) =>
    Array.from({ length: lo + rng.int(hi - lo + 1) }, () => words[rng.int(words.length)]).join(' ');
  for (let done = 0; done < n; ) {
    const k = Math.min(4096, n - done);
    yield Array.from({ length: k }, () => ({
      instruction: text(6, 20),
      input: rng.next() < 0.6 ? '' : text(5, 30),
      output: text(10, 60),
    }));
    done += k;
  }
}

/**
 * The seed-task byte-level BPE (Llama 3 layout); a SentencePiece-style BPE of the same size (Llama 2 layout); or
 * the byte-level one with a normalizer (NFC: no change to this text), which turns the per-piece cache off.
 */
function benchTokenizer(kind: string): Tokenizer {
  const seed = seedTokenizer();
  const { tokenizerJson: json, tokenizerConfig } = seed.origin;
  if (kind === 'byte-level') return seed;
  if (kind === 'uncached')
    return tokenizerFromJson({ ...json, normalizer: { type: 'NFC' } }, tokenizerConfig, null, 'uncached');
  const texts = seedRows().flatMap((r) => [r.instruction, r.input, r.output]);
  const spm = trainBpe(texts, { vocabSize: 1024, specialTokens: ['<unk>', '<s>', '</s>'], style: 'sentencepiece' });
  return tokenizerFromJson(tokenizerJson(spm, { bos: '<s>' }), tokenizerConfig, null, 'sentencepiece');
}

if (mode === 'gen') {
  await writeArrowStream(file, generated(Number(arg)));
} else if (mode === 'read') {
  const t0 = performance.now();
  let rows = 0;
  for await (const b of readFileRows(file)) rows += b.rows.length;
  console.log(JSON.stringify({ rows, seconds: (performance.now() - t0) / 1000, peakRssMb: peakRssMb() }));
} else if (mode === 'pipeline') {
  const tok = benchTokenizer(tokenizerArg ?? 'byte-level');
  const recipe = DataRecipeSchema.parse({
    datasets: [{ path: file }],
    sequence_len: 512,
    sample_packing: true,
    micro_batch_size: 8,
    val_set_size: 0.05,
    dataset_processes: Number(arg),
  });
  const ds = await loadDataset(recipe, tok);
  const stats = newStats();
  const t0 = performance.now();
  let batches = 0;
  let halfwayRssMb = 0; // peak RSS when half the file has streamed: equal to the final peak when memory is flat
  for await (const _ of ds.batches({ stats })) {
    batches++;
    if (!halfwayRssMb && stats.rows >= Number(rowsArg) / 2) halfwayRssMb = peakRssMb();
  }
  const seconds = (performance.now() - t0) / 1000;
  await ds.close();
  console.log(
    JSON.stringify({
      rows: stats.rows,
      examples: stats.examples,
      tokens: stats.tokens,
      batches,
      seconds,
      halfwayRssMb,
      peakRssMb: peakRssMb(),
    }),
  );
} else {
  const self = fileURLToPath(import.meta.url);
  const child = (...args: string[]) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', self, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    if (r.status !== 0) throw new Error(`bench/data.ts ${args[0]} failed`);
    return r.stdout.trim() ? JSON.parse(r.stdout.trim().split('\n').at(-1)!) : null;
  };
  const sizes = (env: string, dflt: string) => (process.env[env] ?? dflt).split(',').map(Number);
  const readSizes = sizes('FT_BENCH_DATA_ROWS', '50000,500000');
  const tokenizeSizes = sizes('FT_BENCH_DATA_TOKENIZE_ROWS', '50000,500000');
  const threads = [...new Set([1, availableParallelism()])];
  const dir = await mkdtemp(path.join(tmpdir(), 'ft-bench-data-'));
  const figures: Figures = {};
  try {
    for (const n of [...new Set([...readSizes, ...tokenizeSizes])].sort((a, b) => a - b)) {
      const f = path.join(dir, `gen-${n}.arrow`);
      child('gen', f, String(n));
      const k = `${n / 1000}k`;
      figures[`arrow file ${k} rows (MB)`] = (await stat(f)).size / 2 ** 20;
      if (readSizes.includes(n)) {
        const read = child('read', f);
        figures[`read ${k}: rows/s`] = read.rows / read.seconds;
        figures[`read ${k}: peak RSS (MB)`] = read.peakRssMb;
      }
      if (!tokenizeSizes.includes(n)) continue;
      for (const t of threads) {
        const pipe = child('pipeline', f, String(t), 'byte-level', String(n));
        const at = `tokenize+pack ${k}, ${t} thread${t > 1 ? 's' : ''}`;
        figures[`${at}: rows/s`] = pipe.rows / pipe.seconds;
        figures[`${at}: tokens/s`] = pipe.tokens / pipe.seconds;
        figures[`${at}: peak RSS halfway (MB)`] = pipe.halfwayRssMb;
        figures[`${at}: peak RSS (MB)`] = pipe.peakRssMb;
      }
    }
    const n = Math.min(...tokenizeSizes);
    for (const kind of ['sentencepiece', 'uncached']) {
      for (const t of threads) {
        const pipe = child('pipeline', path.join(dir, `gen-${n}.arrow`), String(t), kind, String(n));
        figures[`${kind} tokenizer ${n / 1000}k, ${t} thread${t > 1 ? 's' : ''}: rows/s`] = pipe.rows / pipe.seconds;
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  await report(figures);
}
