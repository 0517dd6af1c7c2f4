import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gguf, GGMLQuantizationType } from '@huggingface/gguf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeFloats, encodeFloats, writeSafetensors, type SafetensorsEntry } from '../model/safetensors.ts';
import { FtError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';
import { GGUF_PROJ_NAME, permuteRope } from './gguf-arch.ts';
import { exportLoraGguf } from './gguf.ts';

// From llama.cpp's LlamaModel.permute run in torch (test/fixtures/gguf/make_permute_golden.py).
const golden = JSON.parse(
  await fsp.readFile(new URL('../test/fixtures/gguf/permute_golden.json', import.meta.url), 'utf8'),
) as {
  n_head: number;
  n_kv_head: number;
  head_dim: number;
  r: number;
  q_b: number[];
  q_b_permuted: number[];
  k_b: number[];
  k_b_permuted: number[];
};

// Tiny Llama: hidden 8, 2 heads of 4 (1 kv head), mlp 12, 2 layers, LoRA r=3 on every projection.
const HIDDEN = 8;
const INTER = 12;
const LAYERS = 2;
const R = golden.r;
const OUT: Record<string, [number, number]> = {
  q_proj: [HIDDEN, HIDDEN],
  k_proj: [golden.n_kv_head * golden.head_dim, HIDDEN],
  v_proj: [golden.n_kv_head * golden.head_dim, HIDDEN],
  o_proj: [HIDDEN, HIDDEN],
  gate_proj: [INTER, HIDDEN],
  up_proj: [INTER, HIDDEN],
  down_proj: [HIDDEN, INTER],
};

let dir: string;
let baseDir: string;
let adapterDir: string;
const source = new Map<string, { shape: number[]; data: Float32Array }>();

async function writeAdapter(into: string, entries: SafetensorsEntry[], config: Record<string, unknown>) {
  await fsp.mkdir(into, { recursive: true });
  await fsp.writeFile(path.join(into, 'adapter_config.json'), JSON.stringify(config));
  await writeSafetensors(path.join(into, 'adapter_model.safetensors'), entries);
}

beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-gguf-'));
  baseDir = path.join(dir, 'base');
  adapterDir = path.join(dir, 'adapter');
  await fsp.mkdir(baseDir);
  await fsp.writeFile(
    path.join(baseDir, 'config.json'),
    JSON.stringify({
      architectures: ['LlamaForCausalLM'],
      hidden_size: HIDDEN,
      num_attention_heads: golden.n_head,
      num_key_value_heads: golden.n_kv_head,
      intermediate_size: INTER,
      num_hidden_layers: LAYERS,
      rms_norm_eps: 1e-5,
      vocab_size: 32,
      max_position_embeddings: 64,
    }),
  );
  const rng = new Rng(7);
  const entries: SafetensorsEntry[] = [];
  for (let l = 0; l < LAYERS; l++) {
    for (const [proj, [out, inF]] of Object.entries(OUT)) {
      const group = ['q_proj', 'k_proj', 'v_proj', 'o_proj'].includes(proj) ? 'self_attn' : 'mlp';
      const prefix = `base_model.model.model.layers.${l}.${group}.${proj}`;
      const a = Float32Array.from({ length: R * inF }, () => rng.normal());
      let b = Float32Array.from({ length: out * R }, () => rng.normal());
      if (l === 0 && proj === 'q_proj') b = Float32Array.from(golden.q_b);
      if (l === 0 && proj === 'k_proj') b = Float32Array.from(golden.k_b);
      source.set(`${prefix}.lora_A.weight`, { shape: [R, inF], data: a });
      source.set(`${prefix}.lora_B.weight`, { shape: [out, R], data: b });
      entries.push({ name: `${prefix}.lora_A.weight`, dtype: 'F32', shape: [R, inF], data: a });
      entries.push({ name: `${prefix}.lora_B.weight`, dtype: 'F32', shape: [out, R], data: b });
    }
  }
  await writeAdapter(adapterDir, entries, {
    peft_type: 'LORA',
    r: R,
    lora_alpha: 6,
    base_model_name_or_path: baseDir,
    target_modules: Object.keys(OUT),
  });
});

afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

/** Reads one tensor's data back from the file at the offset the parser reports. */
async function tensorData(file: string, parsed: Awaited<ReturnType<typeof gguf>>, name: string): Promise<Float32Array> {
  const info = parsed.tensorInfos.find((t) => t.name === name)!;
  const n = info.shape.reduce((a, b) => a * Number(b), 1);
  const width = info.dtype === GGMLQuantizationType.F16 ? 2 : 4;
  const bytes = new Uint8Array(n * width);
  const fh = await fsp.open(file, 'r');
  await fh.read(bytes, 0, bytes.length, Number(parsed.tensorDataOffset + info.offset));
  await fh.close();
  return decodeFloats(bytes, width === 2 ? 'F16' : 'F32');
}

describe('exportLoraGguf', () => {
  it('writes a GGUF v3 adapter that @huggingface/gguf parses, with the keys, names, ggml shapes and types llama.cpp expects', async () => {
    const out = path.join(dir, 'adapter-f32.gguf');
    const res = await exportLoraGguf({ adapterDir, out });
    const parsed = await gguf(out, { allowLocalFile: true, typedMetadata: true });
    const md = parsed.metadata as Record<string, unknown>;
    expect(md.version).toBe(3);
    expect(md['general.architecture']).toBe('llama');
    expect(md['general.type']).toBe('adapter');
    expect(md['adapter.type']).toBe('lora');
    expect(md['adapter.lora.alpha']).toBe(6);
    expect(parsed.typedMetadata['adapter.lora.alpha'].type).toBe(6); // GGUFValueType.FLOAT32
    expect(md['general.name']).toBe('adapter');
    expect(md['general.file_type']).toBe(0);
    // base_model_name_or_path is a folder on this machine: nothing of it goes into a file meant to be shared
    expect(Object.keys(md).filter((k) => k.startsWith('general.base_model'))).toEqual([]);
    expect(res.tensors).toBe(LAYERS * 7 * 2);
    expect(parsed.tensorInfos).toHaveLength(LAYERS * 7 * 2);
    for (let l = 0; l < LAYERS; l++) {
      for (const [proj, [outF, inF]] of Object.entries(OUT)) {
        const base = `blk.${l}.${GGUF_PROJ_NAME[proj as keyof typeof GGUF_PROJ_NAME]}.weight`;
        const a = parsed.tensorInfos.find((t) => t.name === `${base}.lora_a`)!;
        const b = parsed.tensorInfos.find((t) => t.name === `${base}.lora_b`)!;
        // ggml ne order: lora_a [in, r] (model ne[0] = in), lora_b [r, out] (model ne[1] = out)
        expect(a.shape).toEqual([BigInt(inF), BigInt(R)]);
        expect(b.shape).toEqual([BigInt(R), BigInt(outF)]);
        expect(a.dtype).toBe(GGMLQuantizationType.F32);
        expect(Number(a.offset) % 32).toBe(0);
        expect(Number(b.offset) % 32).toBe(0);
      }
    }
    expect(Number(parsed.tensorDataOffset) % 32).toBe(0);
    expect((await fsp.stat(out)).size).toBe(res.bytes);
  });

  it('stores lora_a unchanged and lora_b with q/k rows permuted exactly as convert_hf_to_gguf (torch golden)', async () => {
    const out = path.join(dir, 'adapter-f32.gguf');
    await exportLoraGguf({ adapterDir, out });
    const parsed = await gguf(out, { allowLocalFile: true });
    expect(await tensorData(out, parsed, 'blk.0.attn_q.weight.lora_b')).toEqual(Float32Array.from(golden.q_b_permuted));
    expect(await tensorData(out, parsed, 'blk.0.attn_k.weight.lora_b')).toEqual(Float32Array.from(golden.k_b_permuted));
    for (let l = 0; l < LAYERS; l++) {
      for (const proj of Object.keys(OUT)) {
        const group = ['q_proj', 'k_proj', 'v_proj', 'o_proj'].includes(proj) ? 'self_attn' : 'mlp';
        const prefix = `base_model.model.model.layers.${l}.${group}.${proj}`;
        const base = `blk.${l}.${GGUF_PROJ_NAME[proj as keyof typeof GGUF_PROJ_NAME]}.weight`;
        expect(await tensorData(out, parsed, `${base}.lora_a`)).toEqual(source.get(`${prefix}.lora_A.weight`)!.data);
        const b = source.get(`${prefix}.lora_B.weight`)!;
        const nHead = proj === 'q_proj' ? golden.n_head : golden.n_kv_head;
        const want = proj === 'q_proj' || proj === 'k_proj' ? permuteRope(b.data, b.shape[0], R, nHead) : b.data;
        expect(await tensorData(out, parsed, `${base}.lora_b`)).toEqual(want);
      }
    }
  });

  it('writes f16 data equal to the source rounded to half precision', async () => {
    const out = path.join(dir, 'adapter-f16.gguf');
    await exportLoraGguf({ adapterDir, out, outType: 'f16' });
    const parsed = await gguf(out, { allowLocalFile: true });
    expect(parsed.metadata['general.file_type' as never]).toBe(1);
    const info = parsed.tensorInfos.find((t) => t.name === 'blk.1.ffn_down.weight.lora_a')!;
    expect(info.dtype).toBe(GGMLQuantizationType.F16);
    const src = source.get('base_model.model.model.layers.1.mlp.down_proj.lora_A.weight')!.data;
    expect(await tensorData(out, parsed, 'blk.1.ffn_down.weight.lora_a')).toEqual(
      decodeFloats(encodeFloats(src, 'F16'), 'F16'),
    );
  });

  it('folds rsLoRA scaling into adapter.lora.alpha (llama.cpp scales by alpha / r)', async () => {
    const rs = path.join(dir, 'rslora');
    await fsp.mkdir(rs, { recursive: true });
    await fsp.copyFile(path.join(adapterDir, 'adapter_model.safetensors'), path.join(rs, 'adapter_model.safetensors'));
    await fsp.writeFile(
      path.join(rs, 'adapter_config.json'),
      JSON.stringify({ peft_type: 'LORA', r: R, lora_alpha: 6, use_rslora: true, target_modules: Object.keys(OUT) }),
    );
    const out = path.join(dir, 'rs.gguf');
    await exportLoraGguf({ adapterDir: rs, out, baseDir });
    const parsed = await gguf(out, { allowLocalFile: true });
    expect(parsed.metadata['adapter.lora.alpha' as never]).toBeCloseTo(6 * Math.sqrt(R), 5);
  });

  it('rejects a missing base config, a non-LoRA tensor and an unpaired factor with a one-line FtError, writing nothing', async () => {
    const q = 'base_model.model.model.layers.0.self_attn.q_proj';
    const cfg = { peft_type: 'LORA', r: 1, lora_alpha: 1, target_modules: ['q_proj'] };
    const noBase = path.join(dir, 'nobase');
    await writeAdapter(
      noBase,
      [
        { name: `${q}.lora_A.weight`, dtype: 'F32', shape: [1, 8], data: new Float32Array(8) },
        { name: `${q}.lora_B.weight`, dtype: 'F32', shape: [8, 1], data: new Float32Array(8) },
      ],
      cfg,
    );
    const out1 = path.join(dir, 'nobase.gguf');
    await expect(exportLoraGguf({ adapterDir: noBase, out: out1 })).rejects.toThrow(
      /base model config not found.*--base/,
    );

    const embed = path.join(dir, 'embed');
    await writeAdapter(
      embed,
      [
        {
          name: 'base_model.model.model.embed_tokens.lora_embedding_A',
          dtype: 'F32',
          shape: [1, 8],
          data: new Float32Array(8),
        },
      ],
      cfg,
    );
    const out2 = path.join(dir, 'embed.gguf');
    const err = await exportLoraGguf({ adapterDir: embed, out: out2, baseDir }).catch((e) => e);
    expect(err).toBeInstanceOf(FtError);
    expect(err.message).toMatch(/unexpected tensor 'base_model\.model\.model\.embed_tokens\.lora_embedding_A'/);
    expect(err.message).not.toContain('\n');

    const lonely = path.join(dir, 'lonely');
    await writeAdapter(
      lonely,
      [{ name: `${q}.lora_A.weight`, dtype: 'F32', shape: [1, 8], data: new Float32Array(8) }],
      cfg,
    );
    await expect(exportLoraGguf({ adapterDir: lonely, out: out2, baseDir })).rejects.toThrow(
      /missing tensor '.*q_proj\.lora_B\.weight'/,
    );
    await expect(fsp.stat(out1)).rejects.toThrow();
    await expect(fsp.stat(out2)).rejects.toThrow();
  });
});

describe('exportLoraGguf against llama.cpp gguf-py', () => {
  // reference-*.gguf were written by gguf-py's GGUFWriter following convert_lora_to_gguf.py (test/fixtures/gguf/make_reference.py)
  const fixtures = new URL('../test/fixtures/gguf/', import.meta.url);
  for (const outType of ['f32', 'f16'] as const) {
    it(`writes the same bytes as gguf-py for the same adapter (${outType})`, async () => {
      const ref = JSON.parse(await fsp.readFile(new URL('reference_adapter.json', fixtures), 'utf8'));
      const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-gguf-ref-'));
      try {
        const base = path.join(root, 'base');
        await fsp.mkdir(base);
        await fsp.writeFile(path.join(base, 'config.json'), JSON.stringify(ref.base_config));
        const adapter = path.join(root, 'tiny-adapter');
        await writeAdapter(
          adapter,
          ref.tensors.map((t: { name: string; shape: number[]; data: number[] }) => ({
            name: t.name,
            dtype: 'F32',
            shape: t.shape,
            data: Float32Array.from(t.data),
          })),
          ref.adapter_config,
        );
        const out = path.join(root, 'out.gguf');
        await exportLoraGguf({ adapterDir: adapter, out, baseDir: base, outType });
        const want = await fsp.readFile(new URL(`reference-${outType}.gguf`, fixtures));
        const got = await fsp.readFile(out);
        expect(got.length).toBe(want.length);
        expect(got.equals(want)).toBe(true);
      } finally {
        await fsp.rm(root, { recursive: true, force: true });
      }
    });
  }
});
