// Real llama.cpp (the CPU build node-llama-cpp ships) for tests: load a GGUF, tokenize, and decode greedily with the
// next-token distribution at every step. F32 KV cache and no flash attention, so its numbers are comparable to ft's.
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel, type Token } from 'node-llama-cpp';

let llamaOnce: Promise<Llama | string> | null = null;
/** llama.cpp's own warning and error lines since the last load, to say why it refused a file. */
let logLines: string[] = [];

/** The llama.cpp runtime, or why it cannot load (the tests then skip, saying so). */
export function llamaCpp(): Promise<Llama | string> {
  llamaOnce ??= getLlama({
    gpu: false,
    build: 'never',
    progressLogs: false,
    logLevel: LlamaLogLevel.warn,
    logger: (_level, message) => void logLines.push(message.trim()),
  }).catch((e: Error) => `node-llama-cpp's prebuilt binary did not load: ${e.message}`);
  return llamaOnce;
}

/** Loads `file`, turning llama.cpp's refusal into an error that carries its own log lines. */
export async function loadGguf(llama: Llama, file: string): Promise<LlamaModel> {
  logLines = [];
  try {
    return await llama.loadModel({ modelPath: file, gpuLayers: 0, useMmap: false });
  } catch (e) {
    throw new Error(`llama.cpp refused ${file}: ${(e as Error).message}; llama.cpp said: ${logLines.join(' | ')}`);
  }
}

/** What llama.cpp warned about since the last loadGguf (its load included). */
export function llamaCppWarnings(): string[] {
  return [...logLines];
}

export interface Greedy {
  tokens: number[];
  /** log-probabilities of every vocabulary token before each generated token ([steps][vocab]) */
  logprobs: Float64Array[];
}

/** `n` greedy tokens after `prompt` (ids, BOS included by the caller), optionally with a GGUF LoRA adapter applied. */
export async function greedy(
  model: LlamaModel,
  prompt: number[],
  n: number,
  vocabSize: number,
  lora?: string,
): Promise<Greedy> {
  const ctx = await model.createContext({
    contextSize: 64,
    batchSize: 64,
    threads: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: 'F32',
    experimentalKvCacheValueType: 'F32',
    ...(lora ? { lora: { adapters: [{ filePath: lora }] } } : {}),
  });
  try {
    const seq = ctx.getSequence();
    const tokens: number[] = [];
    const logprobs: Float64Array[] = [];
    let input: number[] = prompt;
    for (let step = 0; step < n; step++) {
      const items = input.map((t, i) =>
        i === input.length - 1
          ? ([t as Token, { generateNext: { probabilities: true, token: true, options: { temperature: 0 } } }] as const)
          : (t as Token),
      );
      const res = await seq.controlledEvaluate(items as never);
      const next = res[input.length - 1]!.next;
      const lp = new Float64Array(vocabSize).fill(-Infinity);
      for (const [id, p] of next.probabilities!) lp[id as number] = Math.log(p);
      logprobs.push(lp);
      tokens.push(next.token as number);
      input = [next.token as number];
    }
    return { tokens, logprobs };
  } finally {
    await ctx.dispose();
  }
}
