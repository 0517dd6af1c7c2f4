// Rows -> records: the recipe's column mapping, with every field checked (a bad row is named, never guessed at).
import { FtError } from '../util/errors.ts';
import type { DatasetEntry } from './spec.ts';
import type { ChatMessage, ChatRole, DataRecord, Row } from './types.ts';
import { unreadableReason } from './unreadable-row.ts';

/** A row that cannot become a record: thrown or counted as a skip, as the recipe's on_bad_row says. */
export class BadRowError extends FtError {}

/** ShareGPT speaker names -> chat roles. */
const SHAREGPT_ROLES: Record<string, ChatRole> = {
  human: 'user',
  user: 'user',
  gpt: 'assistant',
  assistant: 'assistant',
  system: 'system',
  tool: 'tool',
};

const found = (row: Row) => Object.keys(row).join(', ') || 'none';

export interface RecordMapper {
  /** the columns to read (a hint for Arrow/Parquet) */
  columns: string[];
  /**
   * The records of one row (several for a self-instruct seed task with `instances`).
   * Throws FtError for a missing column, BadRowError for a null or mistyped field.
   */
  toRecords(row: Row, where: string): DataRecord[];
}

function describe(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v;
}

/** The mapper for a dataset entry; a row a reader could not decode (an unreadableRow) is a BadRowError. */
export function recordMapper(entry: DatasetEntry): RecordMapper {
  const fields = fieldMapper(entry);
  return {
    columns: fields.columns,
    toRecords(row, where) {
      const unreadable = unreadableReason(row);
      if (unreadable !== undefined) throw new BadRowError(`${where}: ${unreadable}`);
      return fields.toRecords(row, where);
    },
  };
}

function fieldMapper(entry: DatasetEntry): RecordMapper {
  if (entry.type === 'chat') {
    const fields = entry.field_messages ? [entry.field_messages] : ['messages', 'conversations'];
    return {
      columns: fields,
      toRecords(row, where) {
        const field = fields.find((f) => f in row);
        if (field === undefined)
          throw new FtError(
            `${where}: missing column ${fields.map((f) => `'${f}'`).join(' or ')} (columns found: ${found(row)})`,
          );
        const list = row[field];
        if (!Array.isArray(list) || list.length === 0)
          throw new BadRowError(`${where}: '${field}' must be a non-empty list of messages, got ${describe(list)}`);
        const messages: ChatMessage[] = list.map((m, i) => {
          const o = (m ?? {}) as Row;
          const rawRole = o.role ?? o.from;
          const content = o.content ?? o.value;
          const role = typeof rawRole === 'string' ? SHAREGPT_ROLES[rawRole] : undefined;
          if (!role)
            throw new BadRowError(
              `${where}: ${field}[${i}] has role ${JSON.stringify(rawRole)}; expected system, user, assistant, tool (or ShareGPT human, gpt)`,
            );
          if (typeof content !== 'string')
            throw new BadRowError(`${where}: ${field}[${i}].content must be a string, got ${describe(content)}`);
          return { role, content };
        });
        return [{ kind: 'chat', messages }];
      },
    };
  }
  const fi = entry.field_instruction;
  const fin = entry.field_input;
  const fo = entry.field_output;
  const text = (row: Row, field: string, where: string): string => {
    const v = row[field];
    if (typeof v === 'string') return v;
    if (v === undefined) throw new BadRowError(`${where}: no field '${field}' (fields found: ${found(row)})`);
    throw new BadRowError(`${where}: field '${field}' must be a string, got ${describe(v)}`);
  };
  return {
    columns: [fi, fin, fo, 'instances'],
    toRecords(row, where) {
      const one = (r: Row, at: string): DataRecord => {
        // input is optional: absent or null means none
        const input = r[fin] === undefined || r[fin] === null ? '' : text(r, fin, at);
        return { kind: 'instruction', instruction: text(row, fi, where), input, output: text(r, fo, at) };
      };
      if (!(fi in row))
        throw new FtError(
          `${where}: missing column '${fi}' (columns found: ${found(row)}); map yours with field_instruction`,
        );
      if (fo in row) return [one(row, where)];
      // a self-instruct / Alpaca seed task: {instruction, instances: [{input, output}, ...]}, one record per instance
      if (Array.isArray(row.instances)) {
        if (row.instances.length === 0) throw new BadRowError(`${where}: 'instances' is empty`);
        return row.instances.map((inst, k) => {
          if (inst === null || typeof inst !== 'object')
            throw new BadRowError(`${where}: instances[${k}] must be an object with input and output`);
          return one(inst as Row, `${where} instances[${k}]`);
        });
      }
      throw new FtError(`${where}: missing column '${fo}' (columns found: ${found(row)}); map yours with field_output`);
    },
  };
}
