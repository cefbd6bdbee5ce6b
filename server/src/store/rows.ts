import type { Selectable } from 'kysely';
import type { DesktopsTable, JsonObject, PoolsTable } from './schema.js';

/**
 * The row boundary. A desktop's handle and a pool's template are JSON text in the database
 * (portable across SQLite and PostgreSQL) and objects everywhere else: a row is parsed here,
 * once, as it leaves a query, and a value is written back through `jsonColumn`.
 */

/** A stored value that is not what its column must hold: the row was written by something else. */
export class StoreError extends Error {
  constructor(
    readonly code: 'STORE_BAD_JSON',
    message: string,
  ) {
    super(message);
  }
}

export function parseObject(text: string, where: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new StoreError('STORE_BAD_JSON', `${where} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new StoreError('STORE_BAD_JSON', `${where} is not a JSON object`);
  return value as JsonObject;
}

/** The column text of a handle or template. */
export function jsonColumn(value: JsonObject): string {
  return JSON.stringify(value);
}

/** A desktops row (with any joined columns) with its handle parsed. */
export function desktopRow<R extends Selectable<DesktopsTable>>(
  raw: R,
): Omit<R, 'handle'> & { handle: JsonObject | null } {
  return {
    ...raw,
    handle: raw.handle === null ? null : parseObject(raw.handle, `the handle of desktop ${raw.id}`),
  };
}

/** A pools row (with any joined columns) with its template parsed. */
export function poolRow<R extends Selectable<PoolsTable>>(
  raw: R,
): Omit<R, 'template'> & { template: JsonObject } {
  return { ...raw, template: parseObject(raw.template, `the template of pool ${raw.id}`) };
}
