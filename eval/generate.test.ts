import { afterAll, describe, expect, it } from 'vitest';
import { recordFormat } from '../data/example.ts';
import { CHATML_TEMPLATE, seedTokenizer } from '../data/testing.ts';
import { TEMPLATES } from '../data/templates.ts';
import { disposeLlama } from '../model/llama.ts';
import { randomLlama, tinyConfig } from '../test/random-llama.ts';
import { cutAtMarkers, generateResponses, stopMarkers } from './generate.ts';

const tok = seedTokenizer();

describe('stop markers', () => {
  it('are the header lines of the Alpaca template, not its preamble', () => {
    const m = stopMarkers({ kind: 'instruction', template: TEMPLATES.alpaca }, tok);
    expect(m.sort()).toEqual(['### Input:', '### Instruction:', '### Response:']);
  });

  it('are the turn markers of ChatML, from the instruction template and from a chat template alike', () => {
    expect(stopMarkers({ kind: 'instruction', template: TEMPLATES.chatml }, tok).sort()).toEqual([
      '<|im_end|>',
      '<|im_start|>assistant',
      '<|im_start|>user',
    ]);
    const chat = stopMarkers(
      recordFormat({ kind: 'chat', chatTemplate: CHATML_TEMPLATE, rolesToTrain: ['assistant'] }, tok),
      tok,
    );
    expect(chat.sort()).toEqual(['<|im_end|>', '<|im_start|>assistant', '<|im_start|>user']);
  });

  it('cut the response where the next turn starts, and trim it', () => {
    expect(cutAtMarkers(' Paris.\n\n### Instruction:\nName a city', ['### Instruction:', '### Response:'])).toBe(
      'Paris.',
    );
    expect(cutAtMarkers('no marker here ', ['### Instruction:'])).toBe('no marker here');
    expect(cutAtMarkers('a ### Response: b ### Instruction: c', ['### Instruction:', '### Response:'])).toBe('a');
  });
});

describe('generateResponses', () => {
  const w = randomLlama(tinyConfig({ vocabSize: tok.vocabSize, maxPositionEmbeddings: 512 }), 5);
  afterAll(() => disposeLlama(w));
  const texts = [
    'Give three tips for staying healthy.',
    'What is the capital of France?',
    'Hi',
    'Write a haiku about the sea and the wind.',
    'List two prime numbers.',
  ];
  const prompts = texts.map((t) => [tok.bosId!, ...tok.encode(t, { addSpecialTokens: false })]);
  const opts = { maxNewTokens: 12, temperature: 0, topK: 0, topP: 1, seed: 0, markers: [] };

  it('batched greedy generation equals one-by-one generation', async () => {
    const batched = await generateResponses(w, tok, prompts, { ...opts, batchSize: 8 });
    const single = await generateResponses(w, tok, prompts, { ...opts, batchSize: 1 });
    const pairs = await generateResponses(w, tok, prompts, { ...opts, batchSize: 2 });
    expect(batched).toEqual(single);
    expect(pairs).toEqual(single);
    expect(single.some((s) => s.length > 0)).toBe(true);
  });

  it('reports progress per batch and truncates at a marker', async () => {
    const done: number[] = [];
    const full = await generateResponses(w, tok, prompts.slice(0, 3), {
      ...opts,
      batchSize: 2,
      onProgress: (n) => done.push(n),
    });
    expect(done).toEqual([2, 3]);
    // a random model babbles; use a piece of its own output as the marker
    const marker = full[0].slice(Math.floor(full[0].length / 2)).slice(0, 3);
    expect(marker.length).toBeGreaterThan(0);
    const [cut] = await generateResponses(w, tok, prompts.slice(0, 1), { ...opts, batchSize: 1, markers: [marker] });
    expect(cut).toBe(full[0].slice(0, full[0].indexOf(marker)).trim());
    expect(cut.length).toBeLessThan(full[0].length);
  });
});
