// Standalone PEFT LoRA adapters on disk: adapter_config.json + adapter_model.safetensors, as written by
// Hugging Face PEFT's `PeftModel.save_pretrained` and read by `PeftModel.from_pretrained` (format notes and
// a reference config in test/fixtures/peft/). Adapters from other tools load too: keys with an adapter name
// (`lora_A.default.weight`), keys without the `base_model.model.` prefix, F16/BF16 factors, regex target_modules.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { SafetensorsFile, type TensorData } from '../model/safetensors.ts';
import { writeSafetensors } from '../model/safetensors.ts';
import { hfModuleName, LINEAR_NAMES, type LinearName, type LlamaWeights } from '../model/types.ts';
import { FtError } from '../util/errors.ts';
import { writeDirAtomic, writeFileAtomic, type DirWriteOptions } from '../util/fs.ts';
import { attachLora, targetNames, validateLoraConfig, type Adapter, type LoraConfig } from './lora.ts';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

/** An adapter as read from disk: its config and factors under canonical PEFT keys (`...q_proj.lora_A.weight`). */
export interface PeftAdapterFiles {
  dir: string;
  config: LoraConfig;
  baseModel: string | null;
  tensors: Map<string, TensorData>;
}

/** PEFT's defaults for fields a config may leave out (peft.tuners.lora.config.LoraConfig; llama/mistral/qwen2 target q_proj, v_proj). */
const PEFT_DEFAULTS = { r: 8, lora_alpha: 8, lora_dropout: 0, target_modules: ['q_proj', 'v_proj'] as LinearName[] };

/**
 * The adapter_config.json PEFT writes for this config: every LoraConfig field, PEFT's default where ft has no
 * counterpart, keys sorted as PEFT's `json.dumps(sort_keys=True)` does. `peft_version` is left out: ft is not PEFT.
 */
export function peftConfigJson(cfg: LoraConfig, baseModel: string | null): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    alora_invocation_tokens: null,
    alpha_pattern: {},
    arrow_config: null,
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: 'none',
    corda_config: null,
    ensure_weight_tying: false,
    eva_config: null,
    exclude_modules: null,
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: cfg.layersToTransform ? [...cfg.layersToTransform].sort((a, b) => a - b) : null,
    loftq_config: {},
    lora_alpha: cfg.alpha,
    lora_bias: false,
    lora_dropout: cfg.dropout,
    lora_ga_config: null,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    qalora_group_size: 16,
    r: cfg.r,
    rank_pattern: {},
    revision: null,
    // PEFT also saves 'all-linear' expanded to the module names it matched
    target_modules: targetNames(cfg),
    target_parameters: null,
    task_type: 'CAUSAL_LM',
    trainable_token_indices: null,
    use_bdlora: null,
    use_dora: false,
    use_qalora: false,
    use_rslora: cfg.useRslora,
  };
  return Object.fromEntries(Object.entries(fields).sort(([a], [b]) => (a < b ? -1 : 1)));
}

const isEmpty = (v: unknown) =>
  v === undefined || v === null || v === false || (typeof v === 'object' && Object.keys(v as object).length === 0);

/** Reads a PEFT LoraConfig JSON into ft's LoraConfig; anything ft cannot reproduce exactly is an error naming the field. */
export function parsePeftConfig(json: unknown, file: string): { config: LoraConfig; baseModel: string | null } {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new FtError(`${file}: expected a JSON object`);
  const j = json as Record<string, unknown>;
  if (j.peft_type !== 'LORA')
    throw new FtError(`${file}: peft_type is ${JSON.stringify(j.peft_type)}, expected "LORA"`);
  if (j.task_type !== undefined && j.task_type !== null && j.task_type !== 'CAUSAL_LM') {
    throw new FtError(`${file}: task_type is ${JSON.stringify(j.task_type)}, expected "CAUSAL_LM"`);
  }
  const unsupported: [string, (v: unknown) => boolean, string][] = [
    ['use_dora', isEmpty, 'DoRA adapters are not supported'],
    ['bias', (v) => v === undefined || v === 'none', 'expected "none" (bias training is not supported)'],
    ['lora_bias', isEmpty, 'LoRA bias terms are not supported'],
    ['fan_in_fan_out', isEmpty, 'expected false (Llama projections are [out, in])'],
    ['modules_to_save', isEmpty, 'fully trained extra modules are not supported'],
    ['rank_pattern', isEmpty, 'per-module ranks are not supported'],
    ['alpha_pattern', isEmpty, 'per-module alphas are not supported'],
    ['layer_replication', isEmpty, 'layer replication is not supported'],
    ['trainable_token_indices', isEmpty, 'trainable tokens are not supported'],
    ['target_parameters', isEmpty, 'targeting parameters is not supported'],
    ['use_qalora', isEmpty, 'QALoRA is not supported'],
  ];
  for (const [field, ok, why] of unsupported) {
    if (!ok(j[field])) throw new FtError(`${file}: ${field} is ${JSON.stringify(j[field])}: ${why}`);
  }
  const num = (field: string, dflt: number) => {
    const v = j[field] ?? dflt;
    if (typeof v !== 'number') throw new FtError(`${file}: ${field} must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const base = j.base_model_name_or_path;
  const { targetModules, layers } = parseTargets(
    j.target_modules ?? PEFT_DEFAULTS.target_modules,
    j.layers_to_transform,
    file,
  );
  const config: LoraConfig = {
    r: num('r', PEFT_DEFAULTS.r),
    alpha: num('lora_alpha', PEFT_DEFAULTS.lora_alpha),
    dropout: num('lora_dropout', PEFT_DEFAULTS.lora_dropout),
    targetModules,
    ...(layers ? { layersToTransform: layers } : {}),
    useRslora: j.use_rslora === true,
  };
  validateLoraConfig(config, Infinity, file);
  return { config, baseModel: typeof base === 'string' ? base : null };
}

/** A module path of every projection in block `i`, as PEFT matches target_modules against it. */
const modulePaths = (i: number) => LINEAR_NAMES.map((p) => [p, hfModuleName(i, p)] as const);

/**
 * target_modules as PEFT reads it: a list of names matched as the module path or its suffix, 'all-linear',
 * or a regex that must match a whole module path. A regex must pick the same projections in every block
 * it touches (ft's adapters are projections × blocks).
 */
function parseTargets(
  t: unknown,
  layersField: unknown,
  file: string,
): { targetModules: LoraConfig['targetModules']; layers: number[] | null } {
  let layers: number[] | null = null;
  if (typeof layersField === 'number') layers = [layersField];
  else if (Array.isArray(layersField)) layers = layersField as number[];
  else if (layersField !== undefined && layersField !== null)
    throw new FtError(
      `${file}: layers_to_transform must be a list of block indices, got ${JSON.stringify(layersField)}`,
    );
  if (t === 'all-linear') return { targetModules: 'all-linear', layers };
  if (Array.isArray(t)) {
    const names = new Set<LinearName>();
    for (const entry of t) {
      const hit = modulePaths(0).filter(
        ([, m]) => typeof entry === 'string' && (m === entry || m.endsWith(`.${entry}`)),
      );
      if (hit.length === 0) {
        throw new FtError(
          `${file}: target_modules has ${JSON.stringify(entry)}, which is no projection of a decoder block (the model has ${LINEAR_NAMES.join(', ')})`,
        );
      }
      for (const [p] of hit) names.add(p);
    }
    return { targetModules: LINEAR_NAMES.filter((p) => names.has(p)), layers };
  }
  if (typeof t === 'string') {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${t})$`);
    } catch {
      throw new FtError(`${file}: target_modules ${JSON.stringify(t)} is not a valid regular expression`);
    }
    // blocks 0..9999 is enough to see which layers a regex selects without knowing the model
    const perLayer = new Map<number, string>();
    for (let i = 0; i < 10000; i++) {
      const projs = modulePaths(i)
        .filter(([, m]) => re.test(m))
        .map(([p]) => p);
      if (projs.length) perLayer.set(i, projs.join(','));
    }
    const sets = new Set(perLayer.values());
    if (sets.size === 0)
      throw new FtError(
        `${file}: target_modules regex ${JSON.stringify(t)} matches no projection (e.g. ${hfModuleName(0, 'q_proj')})`,
      );
    if (sets.size > 1)
      throw new FtError(
        `${file}: target_modules regex ${JSON.stringify(t)} picks different projections in different blocks, which ft cannot represent`,
      );
    const picked = [...perLayer.keys()];
    const allLayers = picked.length === 10000;
    const fromRegex = allLayers ? null : picked;
    if (layers && fromRegex) layers = layers.filter((i) => fromRegex.includes(i));
    return { targetModules: [...sets][0].split(',') as LinearName[], layers: layers ?? fromRegex };
  }
  throw new FtError(
    `${file}: target_modules must be a list of module names, 'all-linear' or a regex string, got ${JSON.stringify(t)}`,
  );
}

// `[base_model.model.]model.layers.{i}.{self_attn|mlp}.{proj}.{lora_A|lora_B}[.{adapter name}].weight`
const KEY = new RegExp(
  `^(?:base_model\\.model\\.)?model\\.layers\\.(\\d+)\\.(self_attn|mlp)\\.(${LINEAR_NAMES.join('|')})\\.(lora_A|lora_B)(?:\\.[^.]+)?\\.weight$`,
);

/** The canonical PEFT key of a LoRA factor. */
export function peftKey(layer: number, proj: LinearName, factor: 'lora_A' | 'lora_B'): string {
  return `base_model.model.${hfModuleName(layer, proj)}.${factor}.weight`;
}

/** Canonical key and position of a stored tensor name, or null when it is not a decoder projection's LoRA factor. */
function parseKey(name: string): { key: string; layer: number; proj: LinearName; factor: 'lora_A' | 'lora_B' } | null {
  const m = KEY.exec(name);
  if (!m) return null;
  const [, layerStr, group, proj, factor] = m;
  const layer = Number(layerStr);
  const key = peftKey(layer, proj as LinearName, factor as 'lora_A' | 'lora_B');
  if (!key.includes(`.${group}.`)) return null; // e.g. mlp.q_proj
  return { key, layer, proj: proj as LinearName, factor: factor as 'lora_A' | 'lora_B' };
}

async function isFile(p: string): Promise<boolean> {
  return fsp.stat(p).then(
    (s) => s.isFile(),
    () => false,
  );
}

/**
 * Reads a PEFT adapter folder: config parsed, every tensor checked to be a LoRA factor of a targeted
 * projection with A [r, in] and B [out, r] paired and consistent. Shapes against a model: `loadPeftAdapter`.
 */
export async function readPeftAdapter(dir: string): Promise<PeftAdapterFiles> {
  const configFile = path.join(dir, ADAPTER_CONFIG);
  const weightsFile = path.join(dir, ADAPTER_WEIGHTS);
  if (!(await isFile(configFile))) throw new FtError(`${dir}: no ${ADAPTER_CONFIG} (expected a PEFT adapter folder)`);
  if (!(await isFile(weightsFile))) {
    const bin = await isFile(path.join(dir, 'adapter_model.bin'));
    throw new FtError(
      `${dir}: no ${ADAPTER_WEIGHTS}${bin ? ' (adapter_model.bin is a pickle, which ft does not load: re-save it with safe_serialization=True)' : ''}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(await fsp.readFile(configFile, 'utf8'));
  } catch (e) {
    throw new FtError(`${configFile}: not valid JSON (${(e as Error).message})`);
  }
  const { config, baseModel } = parsePeftConfig(json, configFile);
  const targets = new Set(targetNames(config));
  const layers = config.layersToTransform ? new Set(config.layersToTransform) : null;
  const st = await SafetensorsFile.open(weightsFile);
  const tensors = new Map<string, TensorData>();
  try {
    for (const name of st.names()) {
      const k = parseKey(name);
      if (!k)
        throw new FtError(
          `${weightsFile}: unexpected tensor '${name}' (expected base_model.model.model.layers.{i}.{self_attn|mlp}.{proj}.lora_A.weight / lora_B.weight)`,
        );
      if (!targets.has(k.proj) || (layers && !layers.has(k.layer))) {
        throw new FtError(
          `${weightsFile}: tensor '${name}' is for a module the config does not target (target_modules ${[...targets].join(', ')}${layers ? `, layers_to_transform ${[...layers].join(', ')}` : ''})`,
        );
      }
      if (tensors.has(k.key)) throw new FtError(`${weightsFile}: tensor '${name}' duplicates ${k.key}`);
      const t = await st.read(name);
      const [rows, cols] = t.shape;
      const r = k.factor === 'lora_A' ? rows : cols;
      if (t.shape.length !== 2 || r !== config.r) {
        throw new FtError(
          `${weightsFile}: tensor '${name}' has shape [${t.shape}], expected ${k.factor === 'lora_A' ? `[r=${config.r}, in]` : `[out, r=${config.r}]`}`,
        );
      }
      tensors.set(k.key, t);
    }
  } finally {
    await st.close();
  }
  for (const key of tensors.keys()) {
    const other = key.endsWith('lora_A.weight')
      ? key.replace('lora_A.weight', 'lora_B.weight')
      : key.replace('lora_B.weight', 'lora_A.weight');
    if (!tensors.has(other))
      throw new FtError(`${weightsFile}: missing tensor '${other}' (its pair '${key}' is present)`);
  }
  if (tensors.size === 0) throw new FtError(`${weightsFile}: holds no LoRA tensors`);
  return { dir, config, baseModel, tensors };
}

/**
 * Attaches the adapter in `dir` to `w` (whose projections may be float or quantized), after checking that every
 * targeted projection of the model has both factors with shapes matching the model. `seed` drives dropout only.
 */
export async function loadPeftAdapter(dir: string, w: LlamaWeights, seed = 0): Promise<Adapter> {
  const files = await readPeftAdapter(dir);
  checkAgainstModel(files, w.layers.length, (i, p) => [
    w.layers[i].proj[p].outFeatures,
    w.layers[i].proj[p].inFeatures,
  ]);
  const adapter = attachLora(w, files.config, seed, path.join(dir, ADAPTER_CONFIG));
  for (const [key, v] of adapter.variables)
    v.assign(tf.tensor2d(files.tensors.get(key)!.data, v.shape as [number, number]));
  return adapter;
}

/** [out, in] of a model's projection. */
export type ProjShape = (layer: number, proj: LinearName) => [number, number];

/**
 * Adapter shapes vs model shapes: every expected key present, no key past the model's `numLayers` blocks,
 * A [r, in], B [out, r] for the model's projection shapes.
 */
export function checkAgainstModel(files: PeftAdapterFiles, numLayers: number, shapeOf: ProjShape): void {
  const weightsFile = path.join(files.dir, ADAPTER_WEIGHTS);
  const why = files.baseModel ? ` (adapter made for ${files.baseModel})` : '';
  validateLoraConfig(files.config, numLayers, path.join(files.dir, ADAPTER_CONFIG));
  for (const key of files.tensors.keys()) {
    const layer = Number(/layers\.(\d+)\./.exec(key)![1]);
    if (layer >= numLayers)
      throw new FtError(
        `${weightsFile}: tensor '${key}' is for block ${layer}, but the model has ${numLayers} blocks${why}`,
      );
  }
  const layers = files.config.layersToTransform ?? [...Array(numLayers).keys()];
  for (const i of layers) {
    for (const p of targetNames(files.config)) {
      const [out, inp] = shapeOf(i, p);
      const want = { lora_A: [files.config.r, inp], lora_B: [out, files.config.r] };
      for (const factor of ['lora_A', 'lora_B'] as const) {
        const key = peftKey(i, p, factor);
        const t = files.tensors.get(key);
        if (!t) throw new FtError(`${weightsFile}: missing tensor '${key}'`);
        if (t.shape[0] !== want[factor][0] || t.shape[1] !== want[factor][1]) {
          throw new FtError(
            `${weightsFile}: tensor '${key}' has shape [${t.shape}], but the model's ${hfModuleName(i, p)} [${out}, ${inp}] needs [${want[factor]}]${why}`,
          );
        }
      }
    }
  }
}

/** Where an adapter folder may be written: over anything (`overwrite`), else only over an ft adapter (see writeDirAtomic). */
export type AdapterWriteOptions = Omit<DirWriteOptions, 'kind'>;

/**
 * Writes config + factors as a PEFT adapter folder, atomically (the folder appears complete or not at all);
 * a folder ft did not write is not replaced unless `opts.overwrite`.
 */
export async function writePeftAdapter(
  dir: string,
  config: LoraConfig,
  baseModel: string | null,
  tensors: Map<string, TensorData>,
  opts: AdapterWriteOptions = {},
): Promise<void> {
  await writeDirAtomic(
    dir,
    async (tmp) => {
      await writeFileAtomic(
        path.join(tmp, ADAPTER_CONFIG),
        JSON.stringify(peftConfigJson(config, baseModel), null, 2) + '\n',
      );
      const entries = [...tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.data }));
      await writeSafetensors(path.join(tmp, ADAPTER_WEIGHTS), entries, { format: 'pt' });
    },
    { ...opts, kind: 'adapter' },
  );
}

/** Saves an attached adapter's current factors (float32) in PEFT's format. */
export async function savePeftAdapter(
  dir: string,
  adapter: Adapter,
  baseModel: string | null,
  opts: AdapterWriteOptions = {},
): Promise<void> {
  const tensors = new Map<string, TensorData>();
  for (const [key, v] of adapter.variables)
    tensors.set(key, { shape: [...v.shape], data: v.dataSync() as Float32Array });
  await writePeftAdapter(dir, adapter.config, baseModel, tensors, opts);
}
