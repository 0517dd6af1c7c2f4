// Eval generation: every prompt continued in batches with model/generate.ts (left-padded, one KV cache per batch),
// stopping at eos, at a marker token, or cutting the text where the template's next header (e.g. `### Instruction:`) starts.
import type { RecordFormat } from '../data/example.ts';
import { generate, type SamplingOptions } from '../model/generate.ts';
import type { Tokenizer } from '../model/tokenizer.ts';
import type { LlamaWeights } from '../model/types.ts';

/** Marker lines longer than this are prose (Alpaca's preamble), not headers. */
const MAX_MARKER = 40;

/**
 * Text that ends a response: the short literal lines of the prompt template (`### Instruction:`, `### Response:`,
 * `<|im_start|>user`, `<|im_end|>`), found by rendering a record whose fields are sentinels. bos/eos text is left out.
 */
export function stopMarkers(format: RecordFormat, tok: Pick<Tokenizer, 'decode' | 'bosId' | 'eosId'>): string[] {
  const sentinel = '\u0001';
  let texts: string[];
  if (format.kind === 'instruction') {
    const { withInput, noInput, responseSuffix } = format.template;
    texts = [withInput, noInput, responseSuffix].map((t) => t.replace(/\{\w+\}/g, sentinel));
  } else {
    const messages = [
      { role: 'user' as const, content: sentinel },
      { role: 'assistant' as const, content: sentinel },
    ];
    texts = format.renderer.pieces(messages, ['assistant'], 'stop markers').map((p) => p.text);
  }
  const specials = [tok.bosId, tok.eosId].filter((id): id is number => id !== null).map((id) => tok.decode([id]));
  const markers = new Set<string>();
  for (const t of texts) {
    let plain = t;
    for (const s of specials) if (s) plain = plain.split(s).join('\n');
    for (const line of plain.split(/[\n\u0001]/)) {
      const m = line.trim();
      if (m !== '' && m.length <= MAX_MARKER) markers.add(m);
    }
  }
  return [...markers];
}

/** The text before the first marker (the whole text when none occurs), trimmed. */
export function cutAtMarkers(text: string, markers: string[]): string {
  let end = text.length;
  for (const m of markers) {
    const at = text.indexOf(m);
    if (at >= 0 && at < end) end = at;
  }
  return text.slice(0, end).trim();
}

export interface EvalGenerationOptions extends SamplingOptions {
  maxNewTokens: number;
  /** prompts per batch (one KV cache each) */
  batchSize: number;
  seed: number;
  /** text markers that end a response (see stopMarkers) */
  markers: string[];
  /** called after each batch with the number of prompts done */
  onProgress?: (done: number) => void;
}

/**
 * Generated responses for prompts, in prompt order. Prompts are batched in order (batch k gets seed + k, so
 * greedy output never depends on the batch size). A marker that is a single token (e.g. `<|im_end|>`) stops
 * its row like eos does.
 */
export async function generateResponses(
  w: LlamaWeights,
  tok: Tokenizer,
  prompts: number[][],
  opts: EvalGenerationOptions,
): Promise<string[]> {
  const markerIds = opts.markers.map((m) => tok.tokenToId(m)).filter((id): id is number => id !== null);
  const eosIds = [...new Set([...w.config.eosTokenIds, tok.eosId, ...markerIds])];
  const out: string[] = [];
  for (let start = 0, k = 0; start < prompts.length; start += opts.batchSize, k++) {
    const batch = prompts.slice(start, start + opts.batchSize);
    const tokens = await generate(w, batch, {
      maxNewTokens: opts.maxNewTokens,
      temperature: opts.temperature,
      topK: opts.topK,
      topP: opts.topP,
      seed: opts.seed + k,
      eosIds,
    });
    for (const ids of tokens) out.push(cutAtMarkers(tok.decode(ids, { skipSpecialTokens: true }), opts.markers));
    opts.onProgress?.(out.length);
  }
  return out;
}
