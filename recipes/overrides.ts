// Command-line overrides of recipe keys: `--lora_r 16 --datasets.0.path other.jsonl --warmup_steps null`, each value
// parsed by the type of the field it sets.
import { FtError } from '../util/errors.ts';
import { didYouMean } from './recipe-errors.ts';
import { fieldSchema, kindOf, knownKeys, RecipeFields, unwrap, type AnySchema, type Key } from './schema.ts';

/** `--key value` pairs from the command line, keys as dotted paths (`lora_r`, `datasets.0.path`). */
export type Overrides = Record<string, string>;

/**
 * Parses `--key value`, `--key=value` and bare `--flag` (= true) tokens, e.g. the arguments yargs leaves unparsed.
 * Values stay strings: loadRecipe parses each by its field's type; `null` removes the key (e.g. `--warmup_steps null
 * --warmup_ratio 0.1` when the recipe sets warmup_steps).
 */
export function parseOverrideArgs(tokens: string[]): Overrides {
  const out: Overrides = {};
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!t.startsWith('--') || t.length < 3) throw new FtError(`unexpected argument '${t}': expected --key value`);
    const eq = t.indexOf('=');
    if (eq > 0) out[t.slice(2, eq)] = t.slice(eq + 1);
    else if (i + 1 < tokens.length && !tokens[i + 1].startsWith('--')) out[t.slice(2)] = tokens[++i];
    else out[t.slice(2)] = 'true';
  }
  return out;
}

function splitKey(dotted: string): Key[] {
  return dotted.split('.').map((k) => (/^\d+$/.test(k) ? Number(k) : k));
}

/** Converts a command-line string to the type of the field it sets (number, boolean, list, string). */
function parseOverrideValue(schema: AnySchema, value: string): unknown {
  switch (kindOf(schema)) {
    case 'number':
    case 'int': {
      const n = Number(value);
      return value.trim() !== '' && Number.isFinite(n) ? n : value;
    }
    case 'boolean':
      return value === 'true' ? true : value === 'false' ? false : value;
    case 'union': {
      // e.g. lora_target_modules: all-linear | list; layers_to_transform: index | list
      if (value === 'all-linear') return value;
      const items = value.split(',').map((v) => v.trim());
      const numbers = items.map(Number);
      const asList = items.every((v) => v !== '' && Number.isFinite(Number(v))) ? numbers : items;
      return items.length === 1 && typeof asList[0] === 'number' ? asList[0] : asList;
    }
    case 'array': {
      const element = unwrap((schema as unknown as { def: { element: AnySchema } }).def.element);
      return value.split(',').map((v) => parseOverrideValue(element, v.trim()));
    }
    default:
      return value;
  }
}

/** Sets each override into the raw recipe object; returns the dotted keys set (for error locations). */
export function applyOverrides(raw: Record<string, unknown>, overrides: Overrides): Set<string> {
  const done = new Set<string>();
  for (const [dotted, value] of Object.entries(overrides)) {
    const keys = splitKey(dotted);
    const schema = fieldSchema(RecipeFields, keys);
    if (!schema) {
      const parentKeys = keys.slice(0, -1);
      const last = String(keys[keys.length - 1]);
      throw new FtError(`--${dotted}: unknown recipe key '${last}'${didYouMean(last, knownKeys(parentKeys))}`);
    }
    let obj: Record<Key, unknown> = raw;
    keys.forEach((k, i) => {
      if (i === keys.length - 1) {
        if (value === 'null') delete obj[k];
        else obj[k] = parseOverrideValue(schema, value);
      } else {
        if (typeof obj[k] !== 'object' || obj[k] === null) obj[k] = typeof keys[i + 1] === 'number' ? [] : {};
        obj = obj[k] as Record<Key, unknown>;
      }
    });
    done.add(dotted);
  }
  return done;
}
