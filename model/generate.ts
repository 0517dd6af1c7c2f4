// Autoregressive generation: a KV cache, one prefill pass over the (left-padded) prompts, then one-token
// decode steps, sampling each next token in JS (temperature, top-k, top-p) with a seeded Rng.
import { withResidentFourBit } from '../engine/four-bit.ts';
import { FtError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';
import { KVCache } from './kv-cache.ts';
import { forward } from './llama.ts';
import type { LlamaWeights, TokenBatch } from './types.ts';

export interface SamplingOptions {
  /** 0 = greedy (argmax) */
  temperature: number;
  /** keep the k most likely tokens; 0 = all */
  topK: number;
  /** keep the smallest set of most likely tokens whose probability reaches p; 1 = all */
  topP: number;
}

/** Index of the largest logit (the first one on ties). */
function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** Draws the next token from one row of logits: temperature, then top-k, then top-p (nucleus), as HF's warpers. */
export function sampleToken(logits: Float32Array, opts: SamplingOptions, rng: Rng): number {
  if (opts.temperature <= 0) return argmax(logits);
  const all = Array.from(logits.keys());
  // only top-k / top-p need the tokens ranked (a full sort of a 128k vocabulary per token is not free)
  const ranked = opts.topK > 0 || opts.topP < 1 ? all.sort((a, b) => logits[b] - logits[a]) : all;
  const candidates = opts.topK > 0 ? ranked.slice(0, opts.topK) : ranked;
  const top = logits[argmax(logits)];
  const weights = candidates.map((i) => Math.exp((logits[i] - top) / opts.temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  // nucleus: keep a token while the probability of the tokens ranked above it is still below top_p
  let kept = 0;
  let mass = 0;
  while (kept < candidates.length && (kept === 0 || mass < opts.topP * total)) mass += weights[kept++];
  let u = rng.next() * mass;
  for (let i = 0; i < kept; i++) {
    u -= weights[i];
    if (u < 0) return candidates[i];
  }
  return candidates[kept - 1];
}

export interface GenerateOptions extends Partial<SamplingOptions> {
  maxNewTokens: number;
  seed?: number;
  /** a row stops when it samples one of these (the eos token itself is not returned) */
  eosIds?: number[];
  /** called as each row's token is chosen, in row order within a step */
  onToken?(row: number, id: number): void;
}

/** Prompts left-padded to one width: pads get segment 0; positions count from each row's first real token. */
export function leftPaddedBatch(prompts: number[][]): TokenBatch {
  const B = prompts.length;
  const T = Math.max(...prompts.map((p) => p.length));
  const ids = new Int32Array(B * T);
  const segments = new Int32Array(B * T);
  const positions = new Int32Array(B * T);
  prompts.forEach((p, b) => {
    const pad = T - p.length;
    p.forEach((id, i) => {
      ids[b * T + pad + i] = id;
      segments[b * T + pad + i] = 1;
      positions[b * T + pad + i] = i;
    });
  });
  return { B, T, ids, segments, positions };
}

/**
 * Continues each prompt by up to maxNewTokens tokens, and never past the model's context (max_position_embeddings:
 * prompt + new tokens); returns only the new tokens of each row.
 * Rows are batched (left padding) and share one KV cache; each row samples with its own Rng derived from `seed`.
 * 4-bit weights stay in the heap from the first step to the last (engine/four-bit.ts withResidentFourBit).
 */
export async function generate(w: LlamaWeights, prompts: number[][], opts: GenerateOptions): Promise<number[][]> {
  if (prompts.length === 0) return [];
  const context = w.config.maxPositionEmbeddings;
  prompts.forEach((p, b) => {
    if (p.length === 0) throw new FtError(`generate: prompt ${b} is empty; it needs at least one token (e.g. BOS)`);
    if (p.length >= context)
      throw new FtError(
        `generate: prompt ${b} has ${p.length} tokens, no room left in the model's context of ${context} (max_position_embeddings)`,
      );
  });
  const sampling: SamplingOptions = { temperature: opts.temperature ?? 0, topK: opts.topK ?? 0, topP: opts.topP ?? 1 };
  const eos = new Set(opts.eosIds ?? []);
  const B = prompts.length;
  const V = w.config.vocabSize;
  const seedRng = new Rng(opts.seed ?? 0);
  const rngs = prompts.map(() => seedRng.fork());
  const out: number[][] = prompts.map(() => []);
  const done = new Array<boolean>(B).fill(false);
  const cache = new KVCache(B, w.layers.length);
  return withResidentFourBit(async () => {
    try {
      let batch = leftPaddedBatch(prompts);
      for (let step = 0; step < opts.maxNewTokens; step++) {
        const logits = forward(w, batch, cache, { logits: 'last' }); // [B, 1, V]
        const rows = (await logits.data()) as Float32Array;
        logits.dispose();
        const next: TokenBatch = {
          B,
          T: 1,
          ids: new Int32Array(B),
          segments: new Int32Array(B),
          positions: new Int32Array(B),
        };
        for (let b = 0; b < B; b++) {
          if (done[b]) continue;
          const id = sampleToken(rows.subarray(b * V, (b + 1) * V), sampling, rngs[b]);
          if (eos.has(id)) {
            done[b] = true;
            continue;
          }
          out[b].push(id);
          opts.onToken?.(b, id);
          // a finished row keeps a padding slot (segment 0) so the batch stays rectangular
          next.ids[b] = id;
          next.segments[b] = 1;
          next.positions[b] = prompts[b].length + out[b].length - 1;
          // the model has no positions past its context: the row ends there
          if (prompts[b].length + out[b].length >= context) done[b] = true;
        }
        if (done.every(Boolean)) break;
        batch = next;
      }
    } finally {
      cache.dispose();
    }
    return out;
  });
}
