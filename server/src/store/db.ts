import fs from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from 'kysely';
import type { Database } from './schema.js';
import { migrations } from './migrations.js';
import { noClusterLock, pgClusterLock, type ClusterLock } from './cluster-lock.js';

export type Db = Kysely<Database>;

export interface StoreOptions {
  /** PostgreSQL URL; SQLite file `<dataDir>/vdi.sqlite` when undefined */
  databaseUrl?: string | undefined;
  dataDir: string;
  /** told of a pooled PostgreSQL connection that died while idle (the pool replaces it) */
  onPoolError?: (err: Error) => void;
}

export interface Store {
  db: Db;
  dialect: 'sqlite' | 'postgres';
  close(): Promise<void>;
  /** cheap round trip for /readyz */
  ping(): Promise<void>;
  /** locks across every node on this database (a no-op on SQLite, which serves one node) */
  lock: ClusterLock;
}

export async function openStore(opts: StoreOptions): Promise<Store> {
  let db: Db;
  let dialect: Store['dialect'];
  let lock = noClusterLock;
  if (opts.databaseUrl) {
    dialect = 'postgres';
    // bigint (int8) columns come back as strings by default; ours hold ms timestamps that fit a double
    pg.types.setTypeParser(20, (v) => Number(v));
    // an idle connection that dies (PostgreSQL restarted, the session terminated) is dropped
    // by its pool; unheard, its 'error' event would end the process
    const pgPool = (max: number) =>
      new pg.Pool({ connectionString: opts.databaseUrl, max }).on('error', (err) =>
        opts.onPoolError?.(err),
      );
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: pgPool(10) }) });
    // a pool of its own: a chain of held locks never starves the queries it waits on
    lock = pgClusterLock(pgPool(16));
  } else {
    dialect = 'sqlite';
    fs.mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    const dbPath = path.join(opts.dataDir, 'vdi.sqlite');
    const file = new SQLite(dbPath);
    file.pragma('journal_mode = WAL');
    // FULL: an assignment committed before a crash or power loss is still there afterwards
    file.pragma('synchronous = FULL');
    file.pragma('foreign_keys = ON');
    file.pragma('busy_timeout = 5000');
    // password hashes and sessions live here: owner only, even if the data dir is traversable
    for (const f of [dbPath, `${dbPath}-wal`, `${dbPath}-shm`])
      if (fs.existsSync(f)) fs.chmodSync(f, 0o600);
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: file }) });
  }
  const migrator = new Migrator({ db, provider: migrations(dialect) });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    await db.destroy();
    await lock.close();
    throw new Error(
      `database migration failed${failed ? ` at ${failed.migrationName}` : ''}: ${String(error)}`,
    );
  }
  return {
    db,
    dialect,
    lock,
    close: async () => {
      await lock.close();
      await db.destroy();
    },
    ping: async () => {
      await sql`select 1`.execute(db);
    },
  };
}
