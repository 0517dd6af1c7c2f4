// Model file and tokenizer throughput, printed as figures: safetensors write/read (F32, F16, BF16 conversion),
// BPE training on the Alpaca seed tasks, tokenizer encode.
// Run: npx tsx bench/model-io.ts [--mb 256]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { tokenizerJson, trainBpe } from '../model/bpe.ts';
import { seedRows } from '../data/testing.ts';
import { SPECIAL_TOKENS } from '../model/init.ts';
import { SafetensorsFile, writeSafetensors, type FloatDtype } from '../model/safetensors.ts';
import { tokenizerFromJson } from '../model/tokenizer.ts';
import { Rng } from '../util/rng.ts';

const mbArg = process.argv.indexOf('--mb');
const totalMb = mbArg > 0 ? Number(process.argv[mbArg + 1]) : 256;
const dir = await mkdtemp(path.join(tmpdir(), 'ft-bench-io-'));
const secs = (t0: number) => (performance.now() - t0) / 1000;

// 16 tensors of [rows, 4096] float32 adding up to totalMb of float32 values
const rows = Math.max(1, Math.round((totalMb * 2 ** 20) / 16 / 4096 / 4));
const rng = new Rng(0);
const values = Float32Array.from({ length: rows * 4096 }, () => 0.02 * rng.normal());
const floatMb = (16 * values.byteLength) / 2 ** 20;
try {
  for (const dtype of ['F32', 'F16', 'BF16'] as FloatDtype[]) {
    const file = path.join(dir, `${dtype}.safetensors`);
    let t0 = performance.now();
    await writeSafetensors(
      file,
      Array.from({ length: 16 }, (_, i) => ({ name: `t${i}`, dtype, shape: [rows, 4096], data: () => values })),
    );
    const w = secs(t0);
    const f = await SafetensorsFile.open(file);
    t0 = performance.now();
    for (const name of f.names()) await f.read(name);
    const r = secs(t0);
    await f.close();
    console.log(
      `safetensors ${dtype.padEnd(4)}: write ${(floatMb / w).toFixed(0)} MB/s, read to float32 ${(floatMb / r).toFixed(0)} MB/s (${floatMb.toFixed(0)} MB of float32 values)`,
    );
    await rm(file);
  }

  const texts = seedRows().flatMap((r) => [r.instruction, r.input, r.output].filter(Boolean));
  const chars = texts.reduce((n, t) => n + t.length, 0);
  let t0 = performance.now();
  const model = trainBpe(texts, { vocabSize: 1024, specialTokens: Object.values(SPECIAL_TOKENS) });
  console.log(`BPE training: ${(chars / 1000).toFixed(0)}k chars to vocab 1024 in ${secs(t0).toFixed(2)} s`);
  const tok = tokenizerFromJson(
    tokenizerJson(model, { bos: SPECIAL_TOKENS.bos }),
    { eos_token: SPECIAL_TOKENS.eos },
    null,
    'bench',
  );
  t0 = performance.now();
  let tokens = 0;
  for (const t of texts) tokens += tok.encode(t).length;
  const s = secs(t0);
  console.log(
    `tokenizer encode: ${(chars / s / 1000).toFixed(0)}k chars/s, ${(tokens / s / 1000).toFixed(0)}k tokens/s, ${(chars / tokens).toFixed(2)} chars/token`,
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
