/**
 * True when a write failed because a row with the same unique key exists: SQLite
 * (better-sqlite3's SqliteError codes) or PostgreSQL (SQLSTATE 23505 from pg). A check-then-
 * insert leaves a gap two concurrent requests can both pass; the database's constraint is
 * what decides, and this tells its answer apart from a real failure.
 */
export function isUniqueViolation(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  return (
    code === 'SQLITE_CONSTRAINT_UNIQUE' ||
    code === 'SQLITE_CONSTRAINT_PRIMARYKEY' ||
    code === '23505'
  );
}
