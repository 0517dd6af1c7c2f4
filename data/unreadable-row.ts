// A row a reader could not decode (bytes that are not UTF-8), passed on in its place so on_bad_row decides.
import type { Row } from './types.ts';

const REASON = Symbol('unreadable row');

/** What a reader does with a row it cannot decode: stop with an FtError, or mark it for the record mapper. */
export type UnreadableRows = 'error' | 'mark';

export const unreadableRow = (reason: string): Row => ({ [REASON]: reason }) as Row;

/** Why `row` could not be read, or undefined for a row read as usual. */
export const unreadableReason = (row: Row): string | undefined => (row as { [REASON]?: string })[REASON];
